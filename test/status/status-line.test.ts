import { afterEach, describe, expect, it, vi } from 'vitest'
import { createLogger } from '../../src/observe/logger'
import { StatusLine, statusLineText, type StatusLineStream } from '../../src/status/status-line'
import type { StatusSnapshot } from '../../src/status/status-types'

const ERASE = '\r\x1b[2K'

function snap(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
  return {
    pid: 1,
    version: '0.1.0',
    instanceId: 'a',
    startedAt: '2024-01-01T00:00:00.000Z',
    uptimeS: 192,
    remotes: [{ name: 'bastion', hostPort: 'b:22', state: 'up', reconnects: 0, channelsOpen: 2 }],
    subnets: [],
    excludes: [],
    proxies: [],
    forwards: [],
    dns: { servers: [], remote: [], queries: 120, cacheHits: 96, tunnel: 24, local: 0, failed: 0 },
    totals: { active: 2, total: 9, failed: 0, bytesUp: 1_200_000, bytesDown: 34_000_000 },
    connections: [],
    ...over,
  }
}

/** A terminal that records writes. */
function fakeTty(isTTY = true, columns = 200): StatusLineStream & { out: string[] } {
  const out: string[] = []
  return { isTTY, columns, out, write: (s: string) => (out.push(s), true) }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

afterEach(() => {
  vi.useRealTimers()
})

describe('statusLineText', () => {
  it('is compact and mentions a bastion that is not up', () => {
    expect(statusLineText(snap())).toBe('up 3m12s · 2 active · 1.2 MB ↑ 34 MB ↓ · dns 120 q (80% cache)')
    const down = snap({ dns: undefined, remotes: [{ name: 'b2', hostPort: 'x:22', state: 'connecting', reconnects: 1, channelsOpen: 0 }] })
    expect(statusLineText(down)).toBe('b2 reconnecting · up 3m12s · 2 active · 1.2 MB ↑ 34 MB ↓')
  })
})

describe('StatusLine', () => {
  it('draws at once, then redraws every interval, in place', async () => {
    vi.useFakeTimers()
    const tty = fakeTty()
    let up = 10
    const line = new StatusLine({ stream: tty, snapshot: () => snap({ uptimeS: up }), intervalMs: 1000 })
    await vi.advanceTimersByTimeAsync(0)
    expect(tty.out).toEqual([ERASE + statusLineText(snap({ uptimeS: 10 }))])
    up = 11
    await vi.advanceTimersByTimeAsync(1000)
    expect(tty.out[1]).toBe(ERASE + statusLineText(snap({ uptimeS: 11 })))
    expect(tty.out.join('')).not.toContain('\n')
    line.stop()
    expect(tty.out.at(-1)).toBe(ERASE)
    const n = tty.out.length
    await vi.advanceTimersByTimeAsync(5000)
    expect(tty.out.length).toBe(n)
  })

  it('gets out of the way of log lines through wrapWrite', async () => {
    const tty = fakeTty()
    const line = new StatusLine({ stream: tty, snapshot: () => snap() })
    await flush()
    const logger = createLogger({ level: 'info', timestamps: false, write: line.wrapWrite((l) => tty.write(l + '\n')) })
    tty.out.length = 0
    logger.info('ssh', 'reconnected')
    expect(tty.out).toEqual([ERASE, '[ssh] reconnected\n', ERASE + statusLineText(snap())])
    line.stop()
  })

  it('clear() erases only when drawn; redraw() restores the last text', async () => {
    const tty = fakeTty()
    const line = new StatusLine({ stream: tty, snapshot: () => snap() })
    await flush()
    tty.out.length = 0
    line.clear()
    line.clear()
    expect(tty.out).toEqual([ERASE])
    line.redraw()
    expect(tty.out[1]).toBe(ERASE + statusLineText(snap()))
    line.stop()
    line.stop()
    line.redraw()
    expect(tty.out).toHaveLength(3)
  })

  it('never gets wider than the terminal (a wrapped line cannot be erased)', async () => {
    const tty = fakeTty(true, 20)
    const line = new StatusLine({ stream: tty, snapshot: () => snap() })
    await flush()
    const text = tty.out[0].slice(ERASE.length)
    expect([...text]).toHaveLength(19)
    expect(text.endsWith('…')).toBe(true)
    line.stop()
  })

  it('does nothing at all when the stream is not a TTY', async () => {
    const pipe = fakeTty(false)
    let calls = 0
    const line = new StatusLine({ stream: pipe, snapshot: () => (calls++, snap()) })
    await flush()
    line.redraw()
    const written: string[] = []
    line.wrapWrite((l) => written.push(l))('hello')
    line.stop()
    expect(line.active).toBe(false)
    expect(pipe.out).toEqual([])
    expect(calls).toBe(0)
    expect(written).toEqual(['hello'])
  })

  it('survives a snapshot function that throws or rejects', async () => {
    const tty = fakeTty()
    const a = new StatusLine({ stream: tty, snapshot: () => { throw new Error('x') } })
    const b = new StatusLine({ stream: tty, snapshot: () => Promise.reject(new Error('y')) })
    await flush()
    a.stop()
    b.stop()
    expect(tty.out).toEqual([])
  })
})
