/**
 * Property-based fuzzing of the raw DNS helpers (src/dns/wire.ts, and the TTL and cache code
 * that reads messages the same way). Their contract: bytes from any local process or the remote
 * resolver never make them throw — malformed input gives undefined — every walk is bounded
 * (compression loops, pointer chains), and what they build is itself a well-formed message:
 * random bytes, compression, truncated and mutated packets of many record types, round-trips
 * against dns-packet.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as dnsPacket from 'dns-packet'
import { DnsCache, cacheTtl } from '../../src/dns/cache'
import { decrementTtls, minAnswerTtl, minTtl, negativeTtl } from '../../src/dns/ttl'
import { aAnswers, anyMessage, dnsName, mutated, packet, randomBytes } from './fuzz-arbitraries'
import { decode } from './helpers'
import {
  HEADER_SIZE,
  errorReply,
  failureReply,
  layout,
  parseQuery,
  readHeader,
  readName,
  readQuestion,
  sameQuestion,
  skipName,
  truncateAnswer,
  udpLimit,
  withId,
} from '../../src/dns/wire'

const cache = new DnsCache()

/** Every exported reader applied to one buffer (and a second one); returns nothing, must not throw. */
function readEverything(b: Buffer, n: number, other: Buffer = b): void {
  readHeader(b)
  const q = parseQuery(b)
  if (q) {
    cache.put(q, other)
    cache.get(q, b)
  }
  minTtl(b)
  minAnswerTtl(b)
  negativeTtl(b)
  decrementTtls(b, n)
  cacheTtl(b)
  sameQuestion(b, other)
  layout(b)
  readQuestion(b)
  udpLimit(b)
  truncateAnswer(b, n)
  errorReply(b, n & 0xf)
  failureReply(b, n & 0xf)
  withId(b, n)
  for (let off = 0; off < Math.min(b.length, 40); off++) {
    readName(b, off)
    skipName(b, off)
  }
}

// ---- a name encoder with compression, to round-trip readName ----

/**
 * Encodes names one after another after a 12-byte header, compressing each against the suffixes
 * already written when `compress` says so (RFC 1035 4.1.4). Returns the message and where each
 * name starts.
 */
function encodeNames(names: string[], compress: boolean[]): { msg: Buffer; starts: number[] } {
  const parts: Buffer[] = [Buffer.alloc(HEADER_SIZE)]
  let len = HEADER_SIZE
  const seen = new Map<string, number>() // lower-cased suffix → offset
  const starts: number[] = []
  names.forEach((name, i) => {
    starts.push(len)
    const labels = name.split('.')
    for (let j = 0; j < labels.length; j++) {
      const suffix = labels.slice(j).join('.').toLowerCase()
      const at = seen.get(suffix)
      if (compress[i] && at !== undefined && at < 0x3fff) {
        parts.push(Buffer.from([0xc0 | (at >> 8), at & 0xff]))
        len += 2
        return
      }
      seen.set(suffix, len)
      const l = Buffer.from(labels[j]!, 'latin1')
      parts.push(Buffer.from([l.length]), l)
      len += 1 + l.length
    }
    parts.push(Buffer.from([0]))
    len += 1
  })
  return { msg: Buffer.concat(parts), starts }
}

describe('dns wire under fuzzing', () => {
  it('no reader throws on random, mutated or valid messages', () => {
    fc.assert(
      fc.property(anyMessage, anyMessage, fc.integer({ min: -10, max: 70000 }), (b, other, n) => {
        readEverything(b, n, other)
      }),
      { numRuns: 3000 },
    )
  })

  it('truncating A answers always fits the limit, keeps id and question, and sets TC only when it cut', () => {
    fc.assert(
      fc.property(aAnswers, fc.integer({ min: 0, max: 70000 }), ({ buf, id, name }, limit) => {
        const t = truncateAnswer(buf, limit)!
        const max = Math.max(512, limit)
        expect(t.length).toBeLessThanOrEqual(max)
        const p = dnsPacket.decode(t)
        expect(p.id).toBe(id)
        expect(p.questions![0].name).toBe(name)
        expect(p.flag_tc).toBe(buf.length > max)
        if (buf.length <= max) expect(t.equals(buf)).toBe(true)
        else expect(p.answers).toEqual([])
      }),
    )
  })

  it('decrementTtls and minAnswerTtl agree with a full decode', () => {
    fc.assert(
      fc.property(aAnswers, fc.nat(0x7fffffff), ({ buf, ttls }, n) => {
        const d = decrementTtls(buf, n)!
        expect(decode(d).answers.filter((x) => x.type === 'A').map((x) => x.ttl)).toEqual(ttls.map((t) => Math.max(0, t - n)))
        expect(minAnswerTtl(buf)).toBe(ttls.length ? Math.min(...ttls) : undefined)
      }),
    )
  })

  it('readName returns a bounded name whose end lies inside the message, or undefined', () => {
    fc.assert(
      fc.property(anyMessage, fc.nat(), (b, at) => {
        const start = b.length === 0 ? 0 : at % b.length
        const r = readName(b, start)
        if (r === undefined) return
        expect(r.end).toBeGreaterThan(start)
        expect(r.end).toBeLessThanOrEqual(b.length)
        // ≤ 255 wire bytes; each wire byte becomes at most 4 characters (\DDD).
        expect(r.name.length).toBeLessThanOrEqual(255 * 4)
        // skipName agrees with readName on where the name ends.
        expect(skipName(b, start)).toBe(r.end)
      }),
      { numRuns: 1500 },
    )
  })

  it('compression loops and long pointer chains terminate with undefined', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.boolean(), (chain, junk, loop) => {
        // chain pointers, each pointing at the previous one; the first points at itself (a loop)
        // or at a root label (a valid but over-long chain when > 128 hops).
        const base = HEADER_SIZE
        const b = Buffer.alloc(base + 1 + chain * 2, junk & 0xff)
        b[base] = 0 // root label
        for (let i = 0; i < chain; i++) {
          const at = base + 1 + i * 2
          const to = i === 0 ? (loop ? at : base) : at - 2
          b[at] = 0xc0 | (to >> 8)
          b[at + 1] = to & 0xff
        }
        const last = base + 1 + (chain - 1) * 2
        const r = readName(b, last)
        if (loop || chain > 128) expect(r).toBeUndefined()
        else expect(r).toEqual({ name: '.', end: last + 2 })
      }),
      { numRuns: 400 },
    )
  })

  it('pointers out of range and into the middle of a pointer are refused, not followed off the end', () => {
    fc.assert(
      fc.property(randomBytes, fc.integer({ min: 0, max: 0x3fff }), (tail, to) => {
        const b = Buffer.concat([Buffer.alloc(HEADER_SIZE), Buffer.from([0xc0 | (to >> 8), to & 0xff]), tail])
        const r = readName(b, HEADER_SIZE)
        if (to >= b.length) expect(r).toBeUndefined()
        if (r) expect(r.end).toBe(HEADER_SIZE + 2)
      }),
      { numRuns: 800 },
    )
  })

  it('compressed names round-trip through readName (case preserved), and skipName finds their end', () => {
    fc.assert(
      fc.property(fc.array(dnsName, { minLength: 1, maxLength: 8 }), fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), (names, compress) => {
        const { msg, starts } = encodeNames(names, compress)
        names.forEach((name, i) => {
          const r = readName(msg, starts[i]!)!
          expect(r.name.toLowerCase()).toBe(name.toLowerCase())
          // Uncompressed, the spelling is exactly what was written.
          if (!compress[i]) expect(r.name).toBe(name)
          expect(r.end).toBe(starts[i + 1] ?? msg.length)
          expect(skipName(msg, starts[i]!)).toBe(r.end)
        })
      }),
      { numRuns: 500 },
    )
  })

  it('labels with dots, backslashes and binary bytes come out escaped, never ambiguous', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 63 }), { minLength: 1, maxLength: 3 }), (labels) => {
        const b = Buffer.concat([Buffer.alloc(HEADER_SIZE), ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
        const r = readName(b, HEADER_SIZE)!
        // Unescaping the text gives back exactly the label bytes: dots only separate labels.
        const back = r.name.split('.').map((t) => Buffer.from(t.replace(/\\(\d{3})/g, (_m, d: string) => String.fromCharCode(Number(d))), 'latin1'))
        expect(back.map((x) => x.toString('hex'))).toEqual(labels.map((l) => Buffer.from(l).toString('hex')))
      }),
      { numRuns: 500 },
    )
  })

  it('valid packets have a layout with every record, and no strict prefix does', () => {
    fc.assert(
      fc.property(packet, fc.array(fc.nat(), { minLength: 1, maxLength: 12 }), ({ buf, answers, authorities, edns }, cuts) => {
        const l = layout(buf)!
        expect(l.records.length).toBe(answers.length + authorities.length + (edns ? 1 : 0))
        expect(l.records.filter((r) => r.section === 0).length).toBe(answers.length)
        for (const cut of [buf.length - 1, ...cuts.map((c) => c % buf.length)]) {
          const prefix = buf.subarray(0, cut)
          expect(layout(prefix)).toBeUndefined()
          readEverything(prefix, cut)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('parseQuery agrees with dns-packet on valid queries; answers and truncated queries are refused', () => {
    fc.assert(
      fc.property(packet, ({ buf, response, id, name, qtype: t, edns }) => {
        const q = parseQuery(buf)
        if (response) {
          expect(q).toBeUndefined()
          return
        }
        expect(q).toBeDefined()
        const d = dnsPacket.decode(buf)
        expect(q!.id).toBe(id)
        expect(q!.name).toBe(name)
        expect(q!.name).toBe(d.questions![0]!.name)
        expect(q!.qtype).toBe(buf.readUInt16BE(q!.questionEnd - 4))
        expect(dnsPacket.decode(buf).questions![0]!.type).toBe(t)
        expect(q!.udpLimit).toBe(edns ? Math.min(65535, Math.max(512, edns.size)) : 512)
        expect(q!.dnssecOk).toBe(edns?.dnssecOk ?? false)
        expect(q!.key.startsWith(name.toLowerCase() + '|')).toBe(true)
        expect(parseQuery(buf.subarray(0, buf.length - 1))).toBeUndefined()
      }),
      { numRuns: 500 },
    )
  })

  it('errorReply builds a well-formed reply for any input with a header', () => {
    fc.assert(
      fc.property(anyMessage, fc.nat(15), (b, rc) => {
        const e = errorReply(b, rc)
        if (b.length < HEADER_SIZE) {
          expect(e).toBeUndefined()
          return
        }
        const h = readHeader(e!)!
        expect(h.id).toBe(b.readUInt16BE(0))
        expect(h.qr).toBe(true)
        expect(h.rcode).toBe(rc)
        expect(h.qdcount).toBeLessThanOrEqual(1)
        expect(h.ancount + h.nscount + h.arcount).toBe(0)
        expect(layout(e!)).toBeDefined()
        expect(failureReply(b, rc).equals(e!)).toBe(true)
      }),
      { numRuns: 1500 },
    )
  })

  it('failureReply always yields a parseable header, even for garbage', () => {
    fc.assert(
      fc.property(randomBytes, fc.nat(15), (b, rc) => {
        const f = failureReply(b, rc)
        expect(readHeader(f)!.rcode).toBe(rc)
        expect(layout(f)).toBeDefined()
      }),
      { numRuns: 500 },
    )
  })

  it('truncateAnswer on mutated packets: unchanged when it fits, else a well-formed TC reply within the limit', () => {
    fc.assert(
      fc.property(fc.oneof(mutated, packet.map((p) => p.buf)), fc.integer({ min: 0, max: 2000 }), (b, limit) => {
        const t = truncateAnswer(b, limit)
        const max = Math.max(512, limit)
        if (b.length <= max) {
          expect(t).toBe(b)
          return
        }
        if (t === undefined) {
          expect(layout(b)).toBeUndefined()
          return
        }
        expect(t.length).toBeLessThanOrEqual(max)
        expect(readHeader(t)!.tc).toBe(true)
        expect(readHeader(t)!.id).toBe(b.readUInt16BE(0))
        expect(layout(t)).toBeDefined()
      }),
      { numRuns: 800 },
    )
  })

  it('withId changes only the id and leaves the input alone', () => {
    fc.assert(
      fc.property(randomBytes, fc.integer(), (b, id) => {
        const copy = Buffer.from(b)
        const w = withId(b, id)
        expect(b.equals(copy)).toBe(true)
        expect(w.length).toBe(b.length)
        if (b.length >= 2) expect(w.readUInt16BE(0)).toBe(id & 0xffff)
        expect(w.subarray(2).equals(b.subarray(2))).toBe(true)
      }),
      { numRuns: 300 },
    )
  })
})
