/**
 * Property-based fuzzing of TTL arithmetic (src/dns/ttl.ts) and the answer cache
 * (src/dns/cache.ts) with random, mutated and valid packets: nothing throws, TTLs only ever go
 * down and stay in 0..2^31-1, and the cache never serves an expired answer, another query's id
 * or more entries than it may hold.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as dnsPacket from 'dns-packet'
import { DnsCache, cacheTtl } from '../../src/dns/cache'
import { decrementTtls, minAnswerTtl, minTtl, negativeTtl, rewriteTtls } from '../../src/dns/ttl'
import { TYPE_OPT, layout, parseQuery, readHeader, sameQuestion } from '../../src/dns/wire'
import { anyMessage, dnsName, rr } from './fuzz-arbitraries'

/** Every TTL (except OPT's) of a message with a layout. */
function ttls(b: Buffer): number[] {
  return layout(b)!.records.filter((r) => r.type !== TYPE_OPT).map((r) => b.readUInt32BE(r.ttlOffset))
}

/** A query and a random answer to it (rcode, records, TC picked at random). */
const exchange = fc
  .record({
    qid: fc.nat(0xffff),
    aid: fc.nat(0xffff),
    name: dnsName,
    rcode: fc.constantFrom(0, 0, 0, 2, 3, 5),
    tc: fc.boolean(),
    answers: fc.array(rr, { maxLength: 4 }),
    authorities: fc.array(rr, { maxLength: 2 }),
  })
  .map((x) => {
    const questions = [{ name: x.name, type: 'A' as const, class: 'IN' as const }]
    const query = dnsPacket.encode({ type: 'query', id: x.qid, flags: dnsPacket.RECURSION_DESIRED, questions })
    const answer = dnsPacket.encode({
      type: 'response',
      id: x.aid,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (x.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | x.rcode,
      questions,
      answers: x.answers,
      authorities: x.authorities,
    })
    return { ...x, query, answer }
  })

describe('ttl helpers under fuzzing', () => {
  it('never throw, whatever the message and the rewrite function returns', () => {
    fc.assert(
      fc.property(anyMessage, fc.double(), (b, x) => {
        minTtl(b)
        minAnswerTtl(b)
        negativeTtl(b)
        cacheTtl(b)
        decrementTtls(b, x)
        const out = rewriteTtls(b, () => x)
        if (out === undefined) return
        expect(out.length).toBe(b.length)
        for (const t of ttls(out)) expect(t).toBeLessThanOrEqual(0x7fffffff)
      }),
      { numRuns: 1500 },
    )
  })

  it('decrementTtls lowers every TTL by n, floors at 0, and touches no other byte', () => {
    fc.assert(
      fc.property(anyMessage, fc.nat(0x7fffffff), (b, n) => {
        const d = decrementTtls(b, n)
        if (layout(b) === undefined) {
          expect(d).toBeUndefined()
          return
        }
        const before = ttls(b).map((t) => (t > 0x7fffffff ? 0 : t)) // RFC 2181 8
        expect(ttls(d!)).toEqual(before.map((t) => Math.max(0, t - n)))
        const min = minTtl(b)
        expect(minTtl(d!)).toBe(min === undefined ? undefined : Math.max(0, min - n))
        // Only the TTL fields differ.
        const offsets = new Set(layout(b)!.records.flatMap((r) => [0, 1, 2, 3].map((i) => r.ttlOffset + i)))
        for (let i = 0; i < b.length; i++) if (!offsets.has(i)) expect(d![i]).toBe(b[i])
      }),
      { numRuns: 400 },
    )
  })

  it('the cache TTL is never above the smallest TTL that justifies it', () => {
    fc.assert(
      fc.property(exchange, ({ answer }) => {
        const t = cacheTtl(answer)
        if (t === undefined) return
        const h = readHeader(answer)!
        expect(h.tc).toBe(false)
        if (h.ancount > 0 && h.rcode === 0) expect(t).toBe(minAnswerTtl(answer))
        else expect(t).toBe(negativeTtl(answer))
      }),
      { numRuns: 500 },
    )
  })
})

describe('DnsCache under fuzzing', () => {
  it('random queries and answers: bounded size, right id and question, never an expired answer', () => {
    let served = 0
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.oneof(exchange.map((e) => [e.query, e.answer] as const), fc.tuple(anyMessage, anyMessage)), fc.nat(200_000)), { maxLength: 25 }),
        fc.integer({ min: 1, max: 5 }),
        (ops, maxEntries) => {
          let now = 1_000_000
          const cache = new DnsCache({ maxEntries, maxTtl: 3600, now: () => now })
          const expiry = new Map<string, number>()
          for (const [[query, answer], dt] of ops) {
            const q = parseQuery(query)
            if (!q) continue
            // put()'s precondition, which both resolvers check before handing an answer on.
            const kept = sameQuestion(query, answer) ? cache.put(q, answer) : 0
            if (kept > 0) {
              expect(kept).toBeLessThanOrEqual(3600)
              expiry.set(q.key, now + kept * 1000)
            }
            expect(cache.size).toBeLessThanOrEqual(maxEntries)
            now += dt
            const got = cache.get(q, query)
            if (got === undefined) continue
            served++
            // Served only while fresh, with the asker's id and question bytes.
            expect(now).toBeLessThan(expiry.get(q.key)!)
            expect(got.readUInt16BE(0)).toBe(q.id)
            expect(got.subarray(12, q.questionEnd).equals(query.subarray(12, q.questionEnd))).toBe(true)
            for (const t of ttls(got)) expect(t).toBeLessThanOrEqual(3600)
            // The answer's own TTL counts down with the entry: a client never caches it longer.
            const h = readHeader(got)!
            if (h.rcode === 0 && h.ancount > 0) expect(minAnswerTtl(got)).toBeLessThanOrEqual(Math.ceil((expiry.get(q.key)! - now) / 1000))
          }
          const s = cache.stats()
          expect(s.entries).toBe(cache.size)
          expect(s.stored - s.evicted).toBeGreaterThanOrEqual(cache.size)
        },
      ),
      { numRuns: 400 },
    )
    // The property above is only worth something if the cache really served answers.
    expect(served).toBeGreaterThan(0)
  })
})
