import { describe, expect, it } from 'vitest'
import { fdHeadroom, openFdCount, openFilesLimit, parseOpenFilesLimit } from '../../../src/platform/os/fd-limit'

describe('open-files limit', () => {
  it('reads the soft limit from /proc/PID/limits text', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 20000                files\n'
    expect(parseOpenFilesLimit(text)).toBe(1024)
    expect(parseOpenFilesLimit('Max open files            unlimited            unlimited            files\n')).toBeUndefined()
    expect(parseOpenFilesLimit('')).toBeUndefined()
  })
  it("this process's own limit is a positive number on Linux", () => {
    if (process.platform !== 'linux') return
    expect(openFilesLimit()).toBeGreaterThan(0)
    expect(openFdCount()).toBeGreaterThan(2)
    expect(fdHeadroom()!).toBeLessThan(openFilesLimit()!)
  })
})
