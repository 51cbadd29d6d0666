import { describe, expect, it } from 'vitest'
import { backoffDelay, retryLine } from '../../src/ssh/backoff'

describe('reconnect backoff (both engines)', () => {
  it('doubles from the minimum, stops at the maximum, jitters ±20 %', () => {
    expect([1, 2, 3, 4].map((a) => backoffDelay(a, 1000, 30_000, () => 0.5))).toEqual([1000, 2000, 4000, 8000])
    expect(backoffDelay(10, 1000, 30_000, () => 0.5)).toBe(30_000)
    expect(backoffDelay(1, 1000, 30_000, () => 0)).toBe(800)
    expect(backoffDelay(1, 1000, 30_000, () => 1)).toBe(1200)
    expect(backoffDelay(10, 1000, 30_000, () => 1)).toBe(30_000)
  })
  it('one line per attempt, with why the last one failed', () => {
    expect(retryLine('b', 2500, 2, 'refused')).toBe('reconnecting to b in 2.5 s (attempt 2; attempt 1 failed: refused)')
    expect(retryLine('b', 1000, 1)).toBe('reconnecting to b in 1.0 s (attempt 1)')
  })
})
