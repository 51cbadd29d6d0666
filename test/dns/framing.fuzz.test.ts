/**
 * Property-based fuzzing of the DNS-over-TCP length-prefix framer (src/dns/framing.ts). The TCP
 * stream can be cut anywhere by the kernel, so the decoder's output must depend only on the
 * bytes, never on how they were chunked — for valid streams and for garbage alike — and its
 * buffer must stay bounded by one frame.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FrameDecoder, MAX_FRAME, frame, type FrameResult } from '../../src/dns/framing'

/** Splits buf at the given cut points (any values, reduced into range). */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((x, y) => x - y)
  const out: Buffer[] = []
  let prev = 0
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p))
    prev = p
  }
  return out
}

/** Feeds chunks; returns every frame (hex), whether it failed, and the largest buffer seen. */
function feed(d: FrameDecoder, chunks: Buffer[]): { frames: string[]; error: boolean; maxBuffered: number } {
  const frames: string[] = []
  let error = false
  let maxBuffered = 0
  for (const c of chunks) {
    const r: FrameResult = d.push(c)
    frames.push(...r.frames.map((f) => f.toString('hex')))
    if (r.error) error = true
    maxBuffered = Math.max(maxBuffered, d.buffered)
  }
  return { frames, error, maxBuffered }
}

const cuts = fc.array(fc.nat(), { maxLength: 30 })

describe('FrameDecoder under fuzzing', () => {
  it('random bytes: the same frames and the same verdict whatever the chunking', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), cuts, fc.integer({ min: 0, max: 700 }), (bytes, c, max) => {
        const buf = Buffer.from(bytes)
        const whole = feed(new FrameDecoder(max), [buf])
        const parts = feed(new FrameDecoder(max), split(buf, c))
        expect(parts.frames).toEqual(whole.frames)
        expect(parts.error).toBe(whole.error)
        // Never more than one incomplete frame is held.
        expect(parts.maxBuffered).toBeLessThanOrEqual(max + 1)
      }),
      { numRuns: 1000 },
    )
  })

  it('framed messages come out unchanged, and an oversized frame stops the stream at the same place', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.option(fc.nat(8), { nil: undefined }),
        cuts,
        (msgs, badAt, c) => {
          const max = 300
          const list = msgs.map((m) => Buffer.from(m))
          // Optionally announce a frame over the limit somewhere in the stream.
          if (badAt !== undefined) list.splice(Math.min(badAt, list.length), 0, Buffer.alloc(max + 1))
          const d = new FrameDecoder(max)
          const r = feed(d, split(Buffer.concat(list.map(frame)), c))
          const firstBad = list.findIndex((m) => m.length > max)
          const good = firstBad < 0 ? list : list.slice(0, firstBad)
          expect(r.frames).toEqual(good.map((m) => m.toString('hex')))
          expect(r.error).toBe(firstBad >= 0)
          // After the failure nothing more comes out.
          if (firstBad >= 0) expect(d.push(frame(Buffer.from('ok')))).toEqual({ frames: [], error: 'oversized' })
          else expect(d.buffered).toBe(0)
        },
      ),
      { numRuns: 800 },
    )
  })

  it('frame() round-trips every size up to 65535 and refuses larger', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_FRAME + 3 }), fc.nat(255), (n, fill) => {
        const msg = Buffer.alloc(n, fill)
        if (n > MAX_FRAME) {
          expect(() => frame(msg)).toThrow(RangeError)
          return
        }
        const f = frame(msg)
        expect(f.readUInt16BE(0)).toBe(n)
        const r = new FrameDecoder().push(f)
        expect(r.frames.length).toBe(1)
        expect(r.frames[0]!.equals(msg)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })
})
