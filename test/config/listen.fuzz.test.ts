/** Property-based fuzzing of --listen parsing (src/config/listen.ts): a loopback/any address and a port, or USAGE. */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { parseListen } from '../../src/config/listen'
import { anyText, tokenText, typed } from '../fuzz-helpers'

describe('--listen parsing under fuzzing', () => {
  it('random text: 127.0.0.1 or 0.0.0.0 with a port 0..65535, or USAGE', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, tokenText(['127.0.0.1', '0.0.0.0', 'localhost', '::1', ':', ' ', '[', ']', '-1', '99999', '0'])), (s) => {
        const r = typed(() => parseListen(s), ['USAGE'])
        if (!r.ok) return
        expect(['127.0.0.1', '0.0.0.0']).toContain(r.value.host)
        expect(Number.isInteger(r.value.port) && r.value.port >= 0 && r.value.port <= 65535).toBe(true)
      }),
      { numRuns: 1500 },
    )
  })

  it('every port in range is accepted alone and after an allowed host', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.constantFrom('', '127.0.0.1:', '0.0.0.0:', 'localhost:'), (port, prefix) => {
        expect(parseListen(`${prefix}${port}`).port).toBe(port)
        expect(typed(() => parseListen(`${prefix}${port + 65536}`), ['USAGE']).ok).toBe(false)
      }),
      { numRuns: 300 },
    )
  })
})
