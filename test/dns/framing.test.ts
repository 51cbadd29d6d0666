import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FrameDecoder, frame } from '../../src/dns/framing'

const msgs = [Buffer.from('first message'), Buffer.alloc(300, 7), Buffer.from('x')]
const stream = Buffer.concat(msgs.map(frame))

describe('FrameDecoder', () => {
  it('decodes coalesced frames from one chunk', () => {
    const r = new FrameDecoder().push(stream)
    expect(r.frames.map((f) => f.toString('hex'))).toEqual(msgs.map((m) => m.toString('hex')))
    expect(r.error).toBeUndefined()
  })

  it('decodes frames split byte by byte, including the length prefix', () => {
    const d = new FrameDecoder()
    const out: Buffer[] = []
    for (const b of stream) out.push(...d.push(Buffer.from([b])).frames)
    expect(out.map((f) => f.toString('hex'))).toEqual(msgs.map((m) => m.toString('hex')))
    expect(d.buffered).toBe(0)
  })

  it('keeps a partial frame until the rest arrives', () => {
    const d = new FrameDecoder()
    expect(d.push(stream.subarray(0, 5)).frames).toEqual([])
    expect(d.buffered).toBe(5)
    const r = d.push(stream.subarray(5, 2 + msgs[0].length + 1))
    expect(r.frames.map(String)).toEqual(['first message'])
    expect(d.buffered).toBe(1)
  })

  it('rejects a frame over maxSize and stays failed', () => {
    const d = new FrameDecoder(100)
    const r = d.push(Buffer.concat([frame(Buffer.from('ok')), frame(Buffer.alloc(101))]))
    expect(r.frames.map(String)).toEqual(['ok'])
    expect(r.error).toBe('oversized')
    expect(d.push(frame(Buffer.from('ok'))).error).toBe('oversized')
  })

  it('a zero-length frame is returned as an empty message', () => {
    expect(new FrameDecoder().push(Buffer.from([0, 0])).frames).toEqual([Buffer.alloc(0)])
  })

  it('frame() refuses messages over 65535 bytes', () => {
    expect(() => frame(Buffer.alloc(65536))).toThrow(RangeError)
  })

  it('any chunking of a frame stream yields the same messages (fuzz)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 8 }), fc.array(fc.nat(700), { maxLength: 20 }), (parts, cuts) => {
        const all = Buffer.concat(parts.map((p) => frame(Buffer.from(p))))
        const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((x, y) => x - y)
        const d = new FrameDecoder()
        const out: Buffer[] = []
        let prev = 0
        for (const p of [...points, all.length]) {
          out.push(...d.push(all.subarray(prev, p)).frames)
          prev = p
        }
        expect(out.map((b) => b.toString('hex'))).toEqual(parts.map((p) => Buffer.from(p).toString('hex')))
      }),
    )
  })

  it('never throws on random bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), fc.integer({ min: 0, max: 65535 }), (chunks, max) => {
        const d = new FrameDecoder(max)
        for (const c of chunks) {
          const r = d.push(Buffer.from(c))
          for (const f of r.frames) expect(f.length).toBeLessThanOrEqual(max)
        }
      }),
    )
  })
})
