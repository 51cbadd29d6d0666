/**
 * The OpenSSH engine's wire layer under fuzzing: the mux socket is a byte stream the kernel
 * cuts anywhere, so frames must not depend on chunking, the switch to proxy mode must hand
 * over exactly the bytes after MUX_S_PROXY, and decoding garbage must throw our typed error
 * (never a RangeError from a Buffer read).
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { typed } from '../../fuzz-helpers'
import { FrameSplitter, MAX_FRAME, Writer } from '../../../src/ssh/openssh/wire'
import { parseMuxReply } from '../../../src/ssh/openssh/mux-messages'
import { parseConnMessage } from '../../../src/ssh/openssh/conn-messages'

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

const frameOf = (body: Uint8Array): Buffer => {
  const b = Buffer.alloc(4 + body.length)
  b.writeUInt32BE(body.length)
  Buffer.from(body).copy(b, 4)
  return b
}

describe('FrameSplitter', () => {
  it('yields the same frames whatever the chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 30 }), (bodies, cuts) => {
        const stream = Buffer.concat(bodies.map(frameOf))
        const got: string[] = []
        const s = new FrameSplitter((f) => got.push(Buffer.from(f).toString('hex')))
        for (const c of split(stream, cuts)) s.push(c)
        expect(got).toEqual(bodies.map((b) => Buffer.from(b).toString('hex')))
      }),
      { numRuns: 500 },
    )
  })

  it('stop() inside a frame callback keeps every following byte, in order, for the next reader', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 100 }), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (bodies, at, tail, cuts) => {
          const stopAfter = at % bodies.length
          const stream = Buffer.concat([...bodies.map(frameOf), Buffer.from(tail)])
          const seen: number[] = []
          const s = new FrameSplitter((f) => {
            seen.push(f.length)
            if (seen.length === stopAfter + 1) s.stop()
          })
          for (const c of split(stream, cuts)) s.push(c)
          expect(seen.length).toBe(stopAfter + 1)
          const consumed = bodies.slice(0, stopAfter + 1).reduce((n, b) => n + 4 + b.length, 0)
          expect(s.takeRest().toString('hex')).toBe(stream.subarray(consumed).toString('hex'))
        },
      ),
      { numRuns: 500 },
    )
  })

  it('refuses a length over the limit with a typed error, even when the length arrives byte by byte', () => {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_FRAME + 1)
    const s = new FrameSplitter(() => {})
    s.push(head.subarray(0, 1))
    s.push(head.subarray(1, 3))
    expect(() => s.push(head.subarray(3))).toThrow(/frame of/)
  })
})

describe('message decoders on garbage', () => {
  it('parseConnMessage and parseMuxReply either decode or throw SSH_PROTOCOL', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 255 }), (bytes, type) => {
        const conn = Buffer.concat([Buffer.from([0, type]), Buffer.from(bytes)])
        typed(() => parseConnMessage(conn), ['SSH_PROTOCOL'])
        typed(() => parseConnMessage(Buffer.from(bytes)), ['SSH_PROTOCOL'])
        typed(() => parseMuxReply(Buffer.from(bytes)), ['SSH_PROTOCOL'])
      }),
      { numRuns: 3000 },
    )
  })

  it('decodes what the writer encodes (CHANNEL_OPEN_FAILURE, DATA, mux REMOTE_PORT)', () => {
    const fail = new Writer().u8(0).u8(92).u32(7).u32(2).string('Connection refused').string('').frame().subarray(4)
    expect(parseConnMessage(fail)).toEqual({ type: 92, recipient: 7, reason: 2, description: 'Connection refused' })
    const data = new Writer().u8(0).u8(94).u32(3).string(Buffer.from('hi')).frame().subarray(4)
    const m = parseConnMessage(data)
    expect(m.type === 94 && m.data.toString()).toBe('hi')
    const port = new Writer().u32(0x80000007).u32(5).u32(40022).frame().subarray(4)
    expect(parseMuxReply(port)).toEqual({ type: 'remote-port', requestId: 5, port: 40022 })
  })
})
