import { describe, expect, it } from 'vitest'
import { openFdCount, openFilesLimit } from '../../src/platform/os/fd-limit'
import { DescriptorReserve, reserveFor } from '../../src/router/descriptor-reserve'

describe('DescriptorReserve', () => {
  it('keeps max(64, 10 %) of the limit, at most half of it', () => {
    expect(reserveFor(1024)).toBe(103)
    expect(reserveFor(256)).toBe(64)
    expect(reserveFor(100)).toBe(50)
    expect(reserveFor(65536)).toBe(6554)
  })

  it('samples the open count at most every 100 ms near the reserve, 1 s far from it, adding admissions between samples', () => {
    let now = 0
    let open = 100
    let samples = 0
    const r = new DescriptorReserve({ limit: 1024, now: () => now, openCount: () => (samples++, open) })
    expect(r.free()).toBe(924)
    r.taken()
    r.taken()
    open = 950 // not seen before the next sample
    now = 999
    expect(r.free()).toBe(922)
    expect(samples).toBe(1)
    now = 1000
    expect(r.free()).toBe(74) // sampled: admissions since are now in the count
    expect(r.allows()).toBe(false)
    expect(samples).toBe(2)
    open = 900
    now = 1099
    expect(r.allows()).toBe(false)
    now = 1100 // near the reserve: sampled again after 100 ms
    expect(r.allows()).toBe(true)
    expect(samples).toBe(3)
  })

  it('never refuses when the count is unknown (not Linux)', () => {
    const r = new DescriptorReserve({ limit: 1024, openCount: () => undefined })
    expect(r.free()).toBeUndefined()
    expect(r.allows()).toBe(true)
  })

  it("reads this process's real count on Linux", () => {
    if (process.platform !== 'linux') return
    const limit = openFilesLimit()!
    const r = new DescriptorReserve({ limit, openCount: openFdCount })
    const free = r.free()!
    expect(free).toBeGreaterThan(0)
    expect(free).toBeLessThan(limit)
  })
})
