import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as dnsPacket from 'dns-packet'
import { DnsCache, cacheTtl } from '../../src/dns/cache'
import { decrementTtls, minAnswerTtl, minTtl, negativeTtl } from '../../src/dns/ttl'
import { errorReply, layout, parseQuery, readHeader, sameQuestion, truncateAnswer } from '../../src/dns/wire'
import { decode } from './helpers'

const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/)
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'))
const record = fc.record({
  ttl: fc.integer({ min: 0, max: 0x7fffffff }),
  ip: fc.ipV4(),
})

/** Random well-formed answers built by dns-packet. */
const answerMsg = fc
  .record({ id: fc.nat(0xffff), name, recs: fc.array(record, { maxLength: 120 }), edns: fc.option(fc.integer({ min: 512, max: 65535 }), { nil: undefined }) })
  .map(({ id, name, recs, edns }) => ({
    name,
    id,
    ttls: recs.map((r) => r.ttl),
    buf: dnsPacket.encode({
      type: 'response',
      id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name, type: 'A', class: 'IN' }],
      answers: recs.map((r) => ({ type: 'A' as const, name, ttl: r.ttl, class: 'IN' as const, data: r.ip })),
      additionals: edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns } as unknown as dnsPacket.Answer],
    }),
  }))

const bytes = fc.uint8Array({ maxLength: 700 }).map((b) => Buffer.from(b))

describe('wire helpers under fuzzing', () => {
  it('never throw on random bytes', () => {
    const cache = new DnsCache()
    fc.assert(
      fc.property(bytes, bytes, fc.integer({ min: -5, max: 70000 }), (x, y, n) => {
        readHeader(x)
        const q = parseQuery(x)
        layout(x)
        minTtl(x)
        minAnswerTtl(x)
        negativeTtl(x)
        decrementTtls(x, n)
        cacheTtl(x)
        sameQuestion(x, y)
        const t = truncateAnswer(x, n)
        // Either returned untouched (it fits) or cut down to the limit.
        if (t !== undefined) expect(t === x || t.length <= Math.max(512, n)).toBe(true)
        const e = errorReply(x, 2)
        if (e) expect(readHeader(e)!.qr).toBe(true)
        if (q) {
          cache.put(q, y)
          cache.get(q, x)
        }
      }),
      { numRuns: 3000 },
    )
  })

  it('truncation always fits the limit, keeps id and question, and sets TC only when it cut', () => {
    fc.assert(
      fc.property(answerMsg, fc.integer({ min: 0, max: 70000 }), ({ buf, id, name }, limit) => {
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
      fc.property(answerMsg, fc.nat(0x7fffffff), ({ buf, ttls }, n) => {
        const d = decrementTtls(buf, n)!
        expect(decode(d).answers.filter((x) => x.type === 'A').map((x) => x.ttl)).toEqual(ttls.map((t) => Math.max(0, t - n)))
        expect(minAnswerTtl(buf)).toBe(ttls.length ? Math.min(...ttls) : undefined)
      }),
    )
  })
})
