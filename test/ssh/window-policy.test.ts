import { describe, expect, it } from 'vitest'
import { BASE_WINDOW, WINDOW_HEADROOM, nextTarget } from '../../src/ssh/window-policy'
import { BASE_WINDOW as OPENSSH_BASE, WINDOW_HEADROOM as OPENSSH_HEADROOM } from '../../src/ssh/openssh/receive-window'

const MiB = 1024 * 1024
const CAP = 16 * MiB

/**
 * Round trips a window-limited channel (the consumer takes everything the window lets through,
 * once per round trip) needs from the base window to `cap`, and the targets on the way.
 */
function climb(base: number, headroom: number, rttMs: number, cap = CAP): { rtts: number; targets: number[] } {
  let target = base
  const targets = [target]
  for (let rtts = 1; rtts <= 100; rtts++) {
    target = nextTarget(target, target, rttMs, rttMs, cap, base, headroom)
    targets.push(target)
    if (target >= cap) return { rtts, targets }
  }
  return { rtts: Infinity, targets }
}

describe('receive-window policy (issue 18: windows reach what the path allows within a few round trips)', () => {
  it('the builtin engine goes from 2 MiB to the 16 MiB cap in 5 round trips while the window is the limit', () => {
    const { rtts, targets } = climb(BASE_WINDOW, WINDOW_HEADROOM, 40)
    expect(rtts).toBe(5)
    // Never more than double per round trip (surplus credit becomes data queued in sshd).
    for (let i = 1; i < targets.length; i++) expect(targets[i]!).toBeLessThanOrEqual(2 * targets[i - 1]!)
  })

  it('the openssh engine starts at 512 KiB (the master copies its output buffer as it grows) and still reaches 16 MiB in 10', () => {
    expect(climb(OPENSSH_BASE, OPENSSH_HEADROOM, 40).rtts).toBe(10)
  })

  it('the same number of round trips at any RTT: growth is counted in round trips, not in time', () => {
    for (const rtt of [10, 40, 120, 300]) expect(climb(BASE_WINDOW, WINDOW_HEADROOM, rtt).rtts).toBe(5)
  })

  it('a consumer slower than the window settles at 1.25 × its rate per round trip + headroom, and falls back by an eighth per round trip', () => {
    // 4 MiB per round trip taken, whatever the window: the target settles at 1.25 × 4 + 2 MiB.
    let t = BASE_WINDOW
    for (let i = 0; i < 20; i++) t = nextTarget(t, 4 * MiB, 40, 40, CAP)
    expect(t).toBe(7 * MiB)
    // Nothing moves any more (the sender stalls): an eighth less per round trip, not a collapse.
    expect(nextTarget(t, 0, 40, 40, CAP)).toBe(Math.floor(t - t / 8))
    let u = t
    for (let i = 0; i < 40; i++) u = nextTarget(u, 0, 40, 40, CAP)
    expect(u).toBe(BASE_WINDOW)
  })
})
