import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { TunnelError } from '../../../src/errors'
import { MAX_LINE, MONITOR_START_FAILURES, defaultMonitorWrap, lineSplitter, startMonitorProcess } from '../../../src/platform/os/monitor-process'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out')
    await sleep(10)
  }
}
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('startMonitorProcess', () => {
  it('delivers stdout lines, reports stderr lines as gaps, and stop() ends the process', async () => {
    const lines: string[] = []
    const gaps: string[] = []
    const m = startMonitorProcess({
      argv: ['sh', '-c', 'printf "one\\ntwo\\n"; echo "netlink receive error No buffer space available (105)" >&2; exec sleep 30'],
      wrap: [],
      onLine: (l) => lines.push(l),
      onGap: (g) => gaps.push(g),
      onFatal: () => {},
    })
    await until(() => lines.length === 2 && gaps.length === 1)
    expect(lines).toEqual(['one', 'two'])
    expect(gaps).toEqual(['sh: netlink receive error No buffer space available (105)'])
    const pid = m.pid()!
    expect(alive(pid)).toBe(true)
    await m.stop()
    expect(alive(pid)).toBe(false)
    expect(m.pid()).toBeUndefined()
  })

  it('restarts a reader that died (reporting the gap), with growing delays, then gives up', async () => {
    const gaps: string[] = []
    const starts: number[] = []
    let fatal: TunnelError | undefined
    const m = startMonitorProcess({
      argv: ['sh', '-c', 'echo started; echo "Cannot open netlink socket: Protocol not supported" >&2; exit 3'],
      wrap: [],
      backoff: { firstMs: 20, maxMs: 80 },
      onLine: () => starts.push(Date.now()),
      onGap: (g) => gaps.push(g),
      onFatal: (e) => (fatal = e),
    })
    await until(() => fatal !== undefined)
    expect(starts.length).toBe(MONITOR_START_FAILURES)
    expect(m.restarts()).toBe(MONITOR_START_FAILURES - 1)
    expect(gaps.filter((g) => g.includes('restarted after it exited (code 3)'))).toHaveLength(MONITOR_START_FAILURES - 1)
    expect(fatal!.code).toBe('FW_UNSUPPORTED')
    expect(fatal!.message).toContain('exited at start 5 times (code 3): Cannot open netlink socket')
    // Backoff: 20, 40, 80, 80 ms between starts (at least).
    const gapsMs = starts.slice(1).map((t, i) => t - starts[i])
    expect(gapsMs[0]).toBeGreaterThanOrEqual(15)
    expect(gapsMs[2]).toBeGreaterThanOrEqual(70)
    await sleep(200)
    expect(starts.length).toBe(MONITOR_START_FAILURES) // no restart after giving up
    await m.stop()
  })

  it('a missing program ends in onFatal, not in an exception', async () => {
    let fatal: TunnelError | undefined
    const m = startMonitorProcess({
      argv: ['/nonexistent/ip', '-o', 'monitor'], wrap: [], backoff: { firstMs: 5, maxMs: 5 },
      onLine: () => {}, onGap: () => {}, onFatal: (e) => (fatal = e),
    })
    await until(() => fatal !== undefined)
    expect(fatal!.message).toContain('ENOENT')
    await m.stop()
  })

  it('passes only PATH and LC_ALL=C to the reader, also through the default setpriv wrap', async () => {
    process.env.ST_TEST_SECRET = 'hunter2'
    const lines: string[] = []
    const m = startMonitorProcess({ argv: ['env'], onLine: (l) => lines.push(l), onGap: () => {}, onFatal: () => {} })
    try {
      await until(() => lines.some((l) => l.startsWith('LC_ALL=')))
      await sleep(50)
      expect(lines.map((l) => l.split('=')[0]).sort()).toEqual(['LC_ALL', 'PATH'])
      expect(lines).toContain('LC_ALL=C')
    } finally {
      delete process.env.ST_TEST_SECRET
      await m.stop()
    }
  })
})

describe('process lifetime', () => {
  it('the reader keeps no event loop alive (its process and pipes are unref’d)', async () => {
    const held = (): number => process.getActiveResourcesInfo().filter((r) => r === 'ProcessWrap' || r === 'PipeWrap').length
    const before = held()
    const lines: string[] = []
    const m = startMonitorProcess({ argv: ['sh', '-c', 'echo up; exec sleep 30'], wrap: [], onLine: (l) => lines.push(l), onGap: () => {}, onFatal: () => {} })
    await until(() => lines.length === 1) // unref'd pipes still deliver
    expect(held()).toBe(before)
    await m.stop()
  })
})

describe('lineSplitter', () => {
  it('joins lines across chunks and drops a runaway line once', () => {
    const lines: string[] = []
    let overflows = 0
    const push = lineSplitter((l) => lines.push(l), () => overflows++)
    push(Buffer.from('ab'))
    push(Buffer.from('c\nde'))
    push(Buffer.from('f\n'))
    expect(lines).toEqual(['abc', 'def'])
    push(Buffer.from('x'.repeat(MAX_LINE + 1)))
    push(Buffer.from('x'.repeat(100)))
    push(Buffer.from('tail of the long one\nnext\n'))
    expect(overflows).toBe(1)
    expect(lines).toEqual(['abc', 'def', 'next'])
  })
})

describe('defaultMonitorWrap', () => {
  it('uses setpriv --pdeathsig on Linux when it exists, nothing elsewhere', () => {
    expect(defaultMonitorWrap('darwin')).toEqual([])
    const has = ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => fs.existsSync(p))
    expect(defaultMonitorWrap('linux', '/nonexistent')).toEqual(has ? [expect.stringMatching(/\/setpriv$/), '--pdeathsig', 'SIGTERM', '--'] : [])
  })
})
