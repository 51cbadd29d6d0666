import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ClockJumpDetector, bootTimeClock, defaultClocks } from '../../../src/platform/os/clock-jump'

/** Clocks the test moves by hand: a suspend advances `real` only. */
function fakeClocks() {
  const t = { mono: 1_000, real: 5_000_000 }
  return { t, clocks: { mono: () => t.mono, real: () => t.real } }
}

describe('ClockJumpDetector', () => {
  afterEach(() => vi.useRealTimers())

  it('reports a suspend (real time ran, monotonic did not) on the next tick, with its length', () => {
    vi.useFakeTimers()
    const { t, clocks } = fakeClocks()
    const jumps: number[] = []
    const d = new ClockJumpDetector({ clocks, intervalMs: 2000, thresholdMs: 4000, onJump: (ms) => jumps.push(ms) })
    d.start()
    // Awake: both clocks advance with the timer.
    for (let i = 0; i < 3; i++) {
      t.mono += 2000
      t.real += 2000
      vi.advanceTimersByTime(2000)
    }
    expect(jumps).toEqual([])
    // Asleep for 10 minutes: the timer fires once after resume; monotonic moved by one interval.
    t.mono += 2000
    t.real += 2000 + 600_000
    vi.advanceTimersByTime(2000)
    expect(jumps).toEqual([600_000])
    // Only once: the next tick compares against the resumed clocks.
    t.mono += 2000
    t.real += 2000
    vi.advanceTimersByTime(2000)
    expect(jumps).toEqual([600_000])
    d.stop()
  })

  it('ignores a blocked event loop, small drift, and a real clock that went back', () => {
    const { t, clocks } = fakeClocks()
    const jumps: number[] = []
    const d = new ClockJumpDetector({ clocks, thresholdMs: 4000, onJump: (ms) => jumps.push(ms) })
    d.start()
    t.mono += 30_000 // a 30 s stall: both clocks advance alike
    t.real += 30_000
    d.check()
    t.mono += 2000
    t.real += 5999 // 3999 ms of drift: under the threshold
    d.check()
    t.mono += 2000
    t.real -= 3_600_000 // the wall clock was set back an hour
    d.check()
    expect(jumps).toEqual([])
    t.mono += 2000
    t.real += 2000 + 4001
    d.check()
    expect(jumps).toEqual([4001])
    d.stop()
  })

  it('keeps no process alive: its timer is unref’d', () => {
    const d = new ClockJumpDetector({ onJump: () => {} })
    d.start()
    const timer = (d as unknown as { timer: NodeJS.Timeout }).timer
    expect(timer.hasRef()).toBe(false)
    d.stop()
  })
})

describe('clocks', () => {
  it('boot time comes from /proc/uptime on Linux and advances', async () => {
    if (process.platform !== 'linux') return
    const boot = bootTimeClock()!
    expect(boot).toBeDefined()
    const a = boot()
    await new Promise((r) => setTimeout(r, 60))
    const b = boot()
    expect(b - a).toBeGreaterThanOrEqual(40)
    expect(b - a).toBeLessThan(5000)
    expect(Math.abs(b - os.uptime() * 1000)).toBeLessThan(2000)
  })

  it('no /proc/uptime, or something else in it: falls back (undefined)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-clock-'))
    try {
      expect(bootTimeClock(path.join(dir, 'missing'))).toBeUndefined()
      fs.writeFileSync(path.join(dir, 'bad'), 'not a number\n')
      expect(bootTimeClock(path.join(dir, 'bad'))).toBeUndefined()
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('default: wall clock where there is no boot time clock', () => {
    const c = defaultClocks('darwin')
    expect(Math.abs(c.real() - Date.now())).toBeLessThan(50)
    expect(Math.abs(c.mono() - performance.now())).toBeLessThan(50)
  })
})
