import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { finish, sum16 } from '../../src/netstack/checksum'

/** RFC 1071 word by word: the reference the word-wide sum must agree with. */
function reference(b: Uint8Array, start: number, end: number, initial = 0): number {
  let s = initial
  for (let i = start; i < end; i += 2) s += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0)
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000)
  return ~s & 0xffff
}

describe('sum16 (word-wide fast path)', () => {
  it('agrees with the word-by-word sum at every alignment, parity and length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(7), fc.nat(7), fc.nat(0xfffff), (bytes, pre, post, initial) => {
        // A view at an arbitrary byte offset of a larger buffer: the aligned part starts anywhere.
        const big = new Uint8Array(1 + pre + bytes.length + post)
        big.set(bytes, 1 + pre)
        const view = Buffer.from(big.buffer, 1, big.length - 1) // byteOffset 1: never word-aligned as given
        const start = pre
        const end = start + bytes.length
        expect(finish(sum16(view, start, end, initial))).toBe(reference(view, start, end, initial))
      }),
      { numRuns: 2000 },
    )
  })

  it('verifies to zero over data carrying its own checksum, as the all-ones and all-zero edge cases need', () => {
    for (const fill of [0x00, 0xff, 0x5a]) {
      const b = Buffer.alloc(1500, fill)
      b.writeUInt16BE(0, 100)
      b.writeUInt16BE(finish(sum16(b, 0, b.length)), 100)
      const ok = finish(sum16(b, 0, b.length))
      expect(ok).toBe(0)
    }
    // a 64 KiB packet: the largest a TUN device with MTU 65535 hands us
    const big = Buffer.alloc(65535, 0xff)
    expect(finish(sum16(big, 0, big.length))).toBe(reference(big, 0, big.length))
  })
})
