import { describe, expect, it } from 'vitest'
import { limitRepeats } from '../../src/observe/log-limiter'
import { memoryLogger } from '../../src/observe/logger'

/** A limiter whose window timers run only when the test says so. */
function setup(level: 'info' | 'verbose' = 'info') {
  const inner = memoryLogger(level)
  const timers: Array<() => void> = []
  const log = limitRepeats(inner, { burst: 3, windowMs: 10_000, schedule: (fn) => void timers.push(fn) })
  const endWindows = (): void => {
    for (const fn of timers.splice(0)) fn()
  }
  return { inner, log, endWindows }
}

describe('limitRepeats', () => {
  it('shows the first 3 of 50 similar warnings, then one summary line when the window ends', () => {
    const { inner, log, endWindows } = setup()
    for (let i = 1; i <= 50; i++) log.warn('route', `#${i} → 10.0.0.${i}:81: connection refused`)
    expect(inner.lines).toEqual([
      '[route] warning: #1 → 10.0.0.1:81: connection refused',
      '[route] warning: #2 → 10.0.0.2:81: connection refused',
      '[route] warning: #3 → 10.0.0.3:81: connection refused',
    ])
    endWindows()
    expect(inner.lines).toHaveLength(4)
    expect(inner.lines[3]).toBe('[route] warning: 47 more like this in the last 10 s (-v shows each): #50 → 10.0.0.50:81: connection refused')
  })

  it('starts a fresh window afterwards, and no summary when nothing was held back', () => {
    const { inner, log, endWindows } = setup()
    log.error('route', 'listener: accept EMFILE')
    endWindows()
    expect(inner.lines).toEqual(['[route] error: listener: accept EMFILE'])
    for (let i = 0; i < 5; i++) log.error('route', 'listener: accept EMFILE')
    expect(inner.lines).toHaveLength(4)
    endWindows()
    expect(inner.lines[4]).toMatch(/^\[route\] error: 2 more like this/)
  })

  it('groups by tag, level and text: different failures are counted apart', () => {
    const { inner, log } = setup()
    for (let i = 0; i < 10; i++) {
      log.warn('route', `#${i} prohibited`)
      log.warn('route', `#${i} refused`)
      log.warn('dns', `#${i} refused`)
      log.error('route', `#${i} refused`)
    }
    expect(inner.lines).toHaveLength(12)
  })

  it('held-back lines still reach -v, and info lines are never limited', () => {
    const { inner, log } = setup('verbose')
    for (let i = 0; i < 10; i++) log.warn('route', `#${i} refused`)
    for (let i = 0; i < 10; i++) log.info('ssh', 'reconnecting')
    expect(inner.lines.filter((l) => l.includes('warning:'))).toHaveLength(3)
    expect(inner.lines.filter((l) => /^\[route\] #\d refused$/.test(l))).toHaveLength(7)
    expect(inner.lines.filter((l) => l.includes('reconnecting'))).toHaveLength(10)
    expect(log.enabled('verbose')).toBe(true)
    expect(log.enabled('debug')).toBe(false)
  })
})
