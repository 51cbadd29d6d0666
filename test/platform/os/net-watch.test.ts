import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { TunnelError } from '../../../src/errors'
import type { MonitorProcessOptions } from '../../../src/platform/os/monitor-process'
import type { BastionPath } from '../../../src/platform/os/net-events'
import type { PathSnapshot } from '../../../src/platform/os/net-path'
import { NetWatcher, type NetWatcherOptions, type PathChange, type ResumeInfo } from '../../../src/platform/os/net-watch'
import { readFixture, scenario, scenarios } from './fixtures'

const all = scenarios(readFixture('ip-monitor-linux.txt'))
const lines = (prefix: string): string[] => scenario(all, prefix).lines
const eth0Index = Number(/^(\d+): eth0/.exec(lines('setup')[0])![1])
const eth0: BastionPath = { dev: 'eth0', index: eth0Index, via: '192.168.50.1', src: '192.168.50.2', up: true }
const eth1: BastionPath = { dev: 'eth1', index: eth0Index + 2, via: '192.168.60.1', src: '192.168.60.2', up: true }

type Handlers = Pick<MonitorProcessOptions, 'onLine' | 'onGap' | 'onFatal'>

/** A watcher on a fake monitor (we feed it captured lines) and a fake route lookup. */
function harness(over: Partial<NetWatcherOptions> = {}) {
  let handlers: Handlers | undefined
  const state = { snap: { path: eth0, links: [{ index: eth0Index, name: 'eth0', up: true, running: true }] } as PathSnapshot, queries: [] as string[], delayMs: 0 }
  const w = new NetWatcher({
    bastion: '203.0.113.7',
    platform: 'linux',
    resume: false,
    startMonitor: (h) => {
      handlers = h
      return { pid: () => 4242, restarts: () => 0, stop: async () => {} }
    },
    query: async (b) => {
      state.queries.push(b)
      const snap = state.snap
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs))
      return snap
    },
    ...over,
  })
  const changes: PathChange[] = []
  const warnings: TunnelError[] = []
  w.on('changed', (c) => changes.push(c))
  w.on('warning', (e) => warnings.push(e))
  const feed = (ls: string[]): void => ls.forEach((l) => handlers!.onLine(l))
  return { w, state, changes, warnings, feed, handlers: () => handlers! }
}

describe('NetWatcher', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('a link flap (a burst of lines) becomes one lookup and one change, ~debounce later', async () => {
    const h = harness()
    await h.w.start()
    expect(h.w.path).toEqual(eth0)
    expect(h.state.queries).toHaveLength(1)
    h.state.snap = { path: undefined, links: [] }
    const burst = lines('eth0 admin down')
    expect(burst.length).toBeGreaterThan(5)
    h.feed(burst)
    await vi.advanceTimersByTimeAsync(99)
    expect(h.changes).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(h.state.queries).toHaveLength(2)
    expect(h.changes).toHaveLength(1)
    expect(h.changes[0]).toMatchObject({ before: eth0, after: undefined, broken: true, reasons: ['link eth0 down'] })
    expect(h.w.path).toBeUndefined()
    await h.w.stop()
  })

  it('unrelated churn (docker bridge, a tunnelled route, another route on eth0) costs nothing', async () => {
    const h = harness()
    await h.w.start()
    h.feed([...lines('unrelated: docker'), ...lines('unrelated: tunnelled'), ...lines('unrelated: route on eth0'), ...lines('ipv6 router advertisement (new')])
    await vi.advanceTimersByTimeAsync(1000)
    expect(h.state.queries).toHaveLength(1) // the initial lookup only
    expect(h.changes).toEqual([])
  })

  it('a relevant change that leaves the path as it was is checked, not reported', async () => {
    const h = harness()
    await h.w.start()
    h.feed(lines('address add 192.168.50.3'))
    await vi.advanceTimersByTimeAsync(200)
    expect(h.state.queries).toHaveLength(2)
    expect(h.changes).toEqual([])
  })

  it('a new default route through another interface is reported with both paths', async () => {
    const h = harness()
    await h.w.start()
    h.state.snap = { path: eth1, links: [] }
    h.feed(lines('default route replaced'))
    await vi.advanceTimersByTimeAsync(100)
    expect(h.changes).toHaveLength(1)
    expect(h.changes[0]).toMatchObject({ before: eth0, after: eth1, broken: false, reasons: ['route 0.0.0.0/0 dev eth1 added'] })
    expect(typeof h.changes[0].firstEventAt).toBe('number')
  })

  it('carrier loss is reported although the route lookup answers the same; its return too', async () => {
    const h = harness()
    await h.w.start()
    h.state.snap = { path: { ...eth0, up: false }, links: [] } // IPv4 routes stay without carrier
    h.feed(lines('eth0 carrier lost'))
    await vi.advanceTimersByTimeAsync(100)
    h.feed(lines('eth0 carrier lost')) // a repeat: already looked up and reported
    await vi.advanceTimersByTimeAsync(100)
    h.state.snap = { path: eth0, links: [] }
    h.feed(lines('eth0 carrier back'))
    await vi.advanceTimersByTimeAsync(100)
    expect(h.changes.map((c) => [c.broken, c.reasons[0], c.after?.up])).toEqual([[true, 'link eth0 lost carrier', false], [true, 'link eth0 up', true]])
    expect(h.state.queries).toHaveLength(3)
  })

  it('notifications that arrive during a lookup get a lookup of their own', async () => {
    const h = harness()
    await h.w.start()
    h.state.delayMs = 300
    h.feed(lines('address add 192.168.50.3'))
    await vi.advanceTimersByTimeAsync(150) // lookup running
    h.state.snap = { path: eth1, links: [] }
    h.feed(lines('default route replaced'))
    await vi.advanceTimersByTimeAsync(250) // first lookup done (old snapshot): no change
    expect(h.changes).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(400) // second window + lookup
    expect(h.state.queries).toHaveLength(3)
    expect(h.changes).toHaveLength(1)
    expect(h.changes[0].after).toEqual(eth1)
  })

  it('a monitor gap (restart, overflow) triggers a lookup; a change is then reported', async () => {
    const h = harness()
    await h.w.start()
    h.state.snap = { path: eth1, links: [] }
    h.handlers().onGap('ip monitor restarted after it exited (signal SIGKILL)')
    await vi.advanceTimersByTimeAsync(100)
    expect(h.changes[0]).toMatchObject({ after: eth1, reasons: ['ip monitor restarted after it exited (signal SIGKILL)'] })
  })

  it('a monitor that cannot run is a warning, never an error', async () => {
    const h = harness()
    await h.w.start()
    h.handlers().onFatal(new TunnelError('FW_UNSUPPORTED', 'ip monitor exited at start 5 times'))
    expect(h.warnings.map((e) => e.message)).toEqual(['ip monitor exited at start 5 times'])
    const unsupported = harness({ platform: 'win32', startMonitor: undefined, query: async () => ({ path: undefined, links: [] }) })
    await unsupported.w.start()
    expect(unsupported.warnings[0].message).toContain('not supported on win32')
  })

  it('a failing lookup is a warning; a broken path is still reported', async () => {
    const h = harness()
    await h.w.start()
    h.state.snap = undefined as unknown as PathSnapshot
    const w = h.w as unknown as { query: () => Promise<PathSnapshot> }
    w.query = async () => {
      throw new Error('ip: not found')
    }
    h.feed(lines('eth0 carrier lost'))
    await vi.advanceTimersByTimeAsync(100)
    expect(h.warnings[0].message).toBe('net watch: ip: not found')
    expect(h.changes[0]).toMatchObject({ broken: true, before: eth0, after: eth0 })
  })

  it('stop() drops a pending burst; setBastion() looks up the new address silently', async () => {
    const h = harness()
    await h.w.start()
    await h.w.setBastion('2001:db8:77::7')
    expect(h.state.queries).toEqual(['203.0.113.7', '2001:db8:77::7'])
    h.feed(lines('ipv6 router advertisement (new'))
    await h.w.stop()
    await vi.advanceTimersByTimeAsync(1000)
    expect(h.state.queries).toHaveLength(2)
    expect(h.changes).toEqual([])
    expect(() => new NetWatcher({ bastion: 'bastion.example' })).toThrow(/not an IP address/)
  })

  it('reports a resume after suspend, and refreshes the path', async () => {
    const t = { mono: 0, real: 0 }
    const h = harness({ resume: { intervalMs: 1000, thresholdMs: 3000, clocks: { mono: () => t.mono, real: () => t.real } } })
    const resumes: ResumeInfo[] = []
    h.w.on('resume', (r) => resumes.push(r))
    await h.w.start()
    t.mono += 1000
    t.real += 1000 + 3_600_000
    await vi.advanceTimersByTimeAsync(1000)
    expect(resumes).toEqual([{ sleptMs: 3_600_000 }])
    expect(h.state.queries).toHaveLength(2)
    expect(h.changes).toEqual([])
    await h.w.stop()
  })
})
