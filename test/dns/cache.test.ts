import { describe, expect, it } from 'vitest'
import { DnsCache, cacheTtl } from '../../src/dns/cache'
import { parseQuery } from '../../src/dns/wire'
import { a, decode, makeAnswer, makeQuery, soa } from './helpers'

function clock(start = 1_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => (t += ms) }
}

function put(c: DnsCache, name: string, answers = [a(name, '10.0.0.1', 60)]) {
  const q = makeQuery(name)
  return c.put(parseQuery(q)!, makeAnswer(q, { answers }))
}

function get(c: DnsCache, name: string, id = 4321) {
  const q = makeQuery(name, 'A', { id })
  return c.get(parseQuery(q)!, q)
}

describe('DnsCache', () => {
  it('answers with the requester id and TTLs lowered by whole elapsed seconds', () => {
    const t = clock()
    const c = new DnsCache({ now: t.now })
    const q = makeQuery('db.corp.internal')
    expect(c.put(parseQuery(q)!, makeAnswer(q, { answers: [a('db.corp.internal', '10.0.0.5', 60), a('db.corp.internal', '10.0.0.6', 100)] }))).toBe(60)
    t.advance(2500)
    const hit = decode(get(c, 'db.corp.internal', 777)!)
    expect(hit.id).toBe(777)
    expect(hit.answers!.map((x) => [x.ttl, x.data])).toEqual([[58, '10.0.0.5'], [98, '10.0.0.6']])
  })

  it('expires at the smallest answer TTL', () => {
    const t = clock()
    const c = new DnsCache({ now: t.now })
    put(c, 'x.example', [a('x.example', '10.0.0.1', 10)])
    t.advance(9999)
    expect(get(c, 'x.example')).toBeDefined()
    t.advance(1)
    expect(get(c, 'x.example')).toBeUndefined()
    expect(c.size).toBe(0)
  })

  it('is case-insensitive and gives back the requester spelling of the name (0x20)', () => {
    const c = new DnsCache()
    put(c, 'db.corp.internal')
    const q = makeQuery('DB.Corp.INTERNAL', 'A', { id: 5 })
    const hit = decode(c.get(parseQuery(q)!, q)!)
    expect(hit.questions![0].name).toBe('DB.Corp.INTERNAL')
    expect(get(c, 'db.corp.internal')).toBeDefined()
    // Different type: a different entry.
    const aaaa = makeQuery('db.corp.internal', 'AAAA')
    expect(c.get(parseQuery(aaaa)!, aaaa)).toBeUndefined()
  })

  it('caches NXDOMAIN for min(SOA TTL, MINIMUM) and shows that TTL on the SOA', () => {
    const t = clock()
    const c = new DnsCache({ now: t.now })
    const q = makeQuery('nope.corp.internal')
    expect(c.put(parseQuery(q)!, makeAnswer(q, { rcode: 'NXDOMAIN', authorities: [soa('corp.internal', 3600, 30)] }))).toBe(30)
    t.advance(10_000)
    const hit = decode(get(c, 'nope.corp.internal')!)
    expect(hit.rcode).toBe('NXDOMAIN')
    expect(hit.authorities![0].ttl).toBe(20)
    t.advance(20_000)
    expect(get(c, 'nope.corp.internal')).toBeUndefined()
  })

  it('caches NODATA from the SOA too, but not negative answers without an SOA', () => {
    const c = new DnsCache()
    const q = makeQuery('x.example')
    expect(c.put(parseQuery(q)!, makeAnswer(q, { authorities: [soa('example', 100, 50)] }))).toBe(50)
    const q2 = makeQuery('y.example')
    expect(c.put(parseQuery(q2)!, makeAnswer(q2, { rcode: 'NXDOMAIN' }))).toBe(0)
    expect(c.size).toBe(1)
  })

  it('never caches SERVFAIL, REFUSED, truncated answers or TTL 0', () => {
    const q = makeQuery('x.example')
    expect(cacheTtl(makeAnswer(q, { rcode: 'SERVFAIL', authorities: [soa('example', 100, 50)] }))).toBeUndefined()
    expect(cacheTtl(makeAnswer(q, { rcode: 'REFUSED' }))).toBeUndefined()
    const tc = Buffer.from(makeAnswer(q, { answers: [a('x.example', '1.1.1.1')] }))
    tc[2] |= 0x02
    expect(cacheTtl(tc)).toBeUndefined()
    const c = new DnsCache()
    expect(put(c, 'x.example', [a('x.example', '1.1.1.1', 0)])).toBe(0)
    expect(c.size).toBe(0)
  })

  it('caps TTLs at maxTtl, in the entry and in the records', () => {
    const t = clock()
    const c = new DnsCache({ now: t.now, maxTtl: 100 })
    expect(put(c, 'x.example', [a('x.example', '1.1.1.1', 999_999)])).toBe(100)
    t.advance(1000)
    expect(decode(get(c, 'x.example')!).answers![0].ttl).toBe(99)
    t.advance(99_000)
    expect(get(c, 'x.example')).toBeUndefined()
  })

  it('is bounded: the least recently used entry goes first', () => {
    const c = new DnsCache({ maxEntries: 3 })
    for (const n of ['a.x', 'b.x', 'c.x']) put(c, n)
    expect(get(c, 'a.x')).toBeDefined() // a is now the most recent
    put(c, 'd.x')
    expect(c.size).toBe(3)
    expect(get(c, 'b.x')).toBeUndefined()
    for (const n of ['a.x', 'c.x', 'd.x']) expect(get(c, n)).toBeDefined()
    expect(c.stats().evicted).toBe(1)
  })

  it('returns copies: mutating a hit does not change the cache', () => {
    const c = new DnsCache()
    put(c, 'x.example')
    const h1 = get(c, 'x.example')!
    h1.fill(0)
    expect(decode(get(c, 'x.example')!).answers![0].data).toBe('10.0.0.1')
  })

  it('serves a cached answer in well under a millisecond', () => {
    const c = new DnsCache()
    put(c, 'fast.example')
    const q = makeQuery('fast.example')
    const n = 20_000
    const t0 = performance.now()
    for (let i = 0; i < n; i++) c.get(parseQuery(q)!, q)
    const per = (performance.now() - t0) / n
    expect(per).toBeLessThan(0.05)
  })
})
