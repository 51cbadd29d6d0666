import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { DnsCache } from '../../src/dns/cache'
import { DnsService } from '../../src/dns/dns-service'
import { SplitDnsPolicy } from '../../src/dns/policy'
import { Rcode, errorReply, readHeader } from '../../src/dns/wire'
import { memoryLogger } from '../../src/observe/logger'
import { FakeResolver, bigAnswer, decode, makeQuery, rcode } from './helpers'

const client = { address: '127.0.0.1', port: 40000 }

function service(opts: { domains?: string[]; cache?: boolean; local?: boolean } = {}) {
  const tunnel = new FakeResolver('10.0.0.2:53')
  const local = new FakeResolver('192.168.1.1:53')
  const log = memoryLogger('debug')
  const svc = new DnsService({
    tunnel,
    local: opts.local === false ? undefined : local,
    policy: new SplitDnsPolicy(opts.domains ?? []),
    cache: opts.cache === false ? undefined : new DnsCache(),
    log,
  })
  return { svc, tunnel, local, log }
}

describe('DnsService', () => {
  it('emptyFamilies [6]: AAAA through the tunnel gets an empty NOERROR answer without asking; A and local names are untouched', async () => {
    const tunnel = new FakeResolver('10.0.0.2:53')
    const local = new FakeResolver('192.168.1.1:53')
    const log = memoryLogger('verbose')
    const svc = new DnsService({ tunnel, local, policy: new SplitDnsPolicy(['corp.internal']), emptyFamilies: [6], log })
    const aaaa = await svc.handle(makeQuery('db.corp.internal', 'AAAA', { id: 7 }), 'udp', client)
    expect(decode(aaaa!)).toMatchObject({ id: 7, rcode: 'NOERROR', answers: [], questions: [{ name: 'db.corp.internal', type: 'AAAA' }] })
    expect(tunnel.asked).toEqual([])
    await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client)
    await svc.handle(makeQuery('www.example.com', 'AAAA'), 'udp', client)
    expect(tunnel.asked).toEqual(['db.corp.internal'])
    expect(local.asked).toEqual(['www.example.com'])
    expect(log.lines).toContain('[dns] db.corp.internal AAAA → empty: no subnet of that family is tunnelled (--dns-all-families)')
  })

  it('reports every answered query to onAnswered (for the audit log), with its route', async () => {
    const seen: string[] = []
    const svc = new DnsService({
      tunnel: new FakeResolver('10.0.0.2:53'),
      local: new FakeResolver('192.168.1.1:53'),
      policy: new SplitDnsPolicy(['corp.internal']),
      cache: new DnsCache(),
      onAnswered: (e) => seen.push(`${e.client} ${e.qname} ${e.qtype} ${e.route} ${e.rcode}`),
    })
    await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client)
    await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client)
    await svc.handle(makeQuery('www.example.com', 'AAAA'), 'tcp', { address: '::1', port: 5 })
    expect(seen).toEqual([
      '127.0.0.1:40000 db.corp.internal A tunnel NOERROR',
      '127.0.0.1:40000 db.corp.internal A cache NOERROR',
      '[::1]:5 www.example.com AAAA local NOERROR',
    ])
  })

  it('sends names under --dns-domain through the tunnel and others to the local resolver', async () => {
    const { svc, tunnel, local, log } = service({ domains: ['corp.internal'] })
    const a1 = await svc.handle(makeQuery('db.corp.internal', 'A', { id: 11 }), 'udp', client)
    const a2 = await svc.handle(makeQuery('www.example.com', 'A', { id: 12 }), 'udp', client)
    expect(decode(a1!).id).toBe(11)
    expect(decode(a2!).id).toBe(12)
    expect(tunnel.asked).toEqual(['db.corp.internal'])
    expect(local.asked).toEqual(['www.example.com'])
    expect(log.lines.some((l) => /^\[dns\] db\.corp\.internal A → tunnel \(10\.0\.0\.2\) [\d.]+ ms$/.test(l))).toBe(true)
    expect(log.lines.some((l) => /^\[dns\] www\.example\.com A → local \(192\.168\.1\.1\)/.test(l))).toBe(true)
  })

  it('answers repeated queries from the cache, logged as such', async () => {
    const { svc, tunnel, log } = service()
    await svc.handle(makeQuery('db.corp.internal'), 'udp', client)
    const hit = await svc.handle(makeQuery('DB.corp.internal', 'A', { id: 99 }), 'udp', client)
    expect(decode(hit!).id).toBe(99)
    expect(decode(hit!).answers![0].data).toBe('10.9.9.9')
    expect(tunnel.asked).toHaveLength(1)
    expect(log.lines.some((l) => l.includes('DB.corp.internal A → cache'))).toBe(true)
    expect(svc.stats()).toMatchObject({ queries: 2, cacheHits: 1, tunnel: 1 })
  })

  it('does not cache with --no-dns-cache, nor failures', async () => {
    const { svc, tunnel } = service({ cache: false })
    await svc.handle(makeQuery('x.example'), 'udp', client)
    await svc.handle(makeQuery('x.example'), 'udp', client)
    expect(tunnel.asked).toHaveLength(2)
    const s2 = service()
    s2.tunnel.answer = (raw) => errorReply(raw, Rcode.SERVFAIL)!
    s2.tunnel.ok = false
    await s2.svc.handle(makeQuery('x.example'), 'udp', client)
    await s2.svc.handle(makeQuery('x.example'), 'udp', client)
    expect(s2.tunnel.asked).toHaveLength(2)
    expect(s2.svc.stats().failed).toBe(2)
  })

  it('truncates large answers for UDP clients (TC=1, ≤ 512) but not for TCP', async () => {
    const { svc, tunnel } = service()
    tunnel.answer = (raw) => bigAnswer(raw, 100)
    const udp = await svc.handle(makeQuery('big.example', 'A', { id: 5 }), 'udp', client)
    expect(udp!.length).toBeLessThanOrEqual(512)
    expect(decode(udp!).flag_tc).toBe(true)
    expect(decode(udp!).id).toBe(5)
    const tcp = await svc.handle(makeQuery('big.example'), 'tcp', client)
    expect(decode(tcp!).answers).toHaveLength(100)
    expect(decode(tcp!).flag_tc).toBe(false)
  })

  it('honours the EDNS0 size of a UDP client', async () => {
    const { svc, tunnel } = service({ cache: false })
    tunnel.answer = (raw) => bigAnswer(raw, 100) // about 2.8 kB
    const big = await svc.handle(makeQuery('big.example', 'A', { edns: 4096 }), 'udp', client)
    expect(decode(big!).flag_tc).toBe(false)
    expect(decode(big!).answers).toHaveLength(100)
    const small = await svc.handle(makeQuery('big.example', 'A', { edns: 1232 }), 'udp', client)
    expect(small!.length).toBeLessThanOrEqual(1232)
    expect(decode(small!).flag_tc).toBe(true)
  })

  it('answers FORMERR to a malformed query with a readable header, drops garbage and responses', async () => {
    const { svc, tunnel } = service()
    const bad = Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), Buffer.from([40, 1, 2])])
    const r = await svc.handle(bad, 'udp', client)
    expect(readHeader(r!)).toMatchObject({ id: 0xabcd, qr: true, rcode: Rcode.FORMERR })
    expect(await svc.handle(Buffer.from('hi'), 'udp', client)).toBeUndefined()
    expect(await svc.handle(errorReply(makeQuery('x.example'), 0)!, 'udp', client)).toBeUndefined()
    expect(tunnel.asked).toHaveLength(0)
    expect(svc.stats()).toMatchObject({ dropped: 2, rejected: 1 })
  })

  it('answers NOTIMP to other opcodes and REFUSED to local names without a local resolver', async () => {
    const { svc } = service({ domains: ['corp.internal'], local: false })
    const notify = Buffer.from(makeQuery('x.example'))
    notify[2] |= 4 << 3 // opcode NOTIFY
    expect(rcode((await svc.handle(notify, 'udp', client))!)).toBe(Rcode.NOTIMP)
    expect(rcode((await svc.handle(makeQuery('www.example.com'), 'udp', client))!)).toBe(Rcode.REFUSED)
  })

  it('turns a malformed answer from a resolver into SERVFAIL', async () => {
    const { svc, tunnel } = service()
    tunnel.answer = () => Buffer.from('junk')
    const r = await svc.handle(makeQuery('x.example', 'A', { id: 8 }), 'udp', client)
    expect(rcode(r!)).toBe(Rcode.SERVFAIL)
    expect(decode(r!).id).toBe(8)
  })

  it('never throws on random input and answers only with well-formed messages (fuzz)', async () => {
    const { svc } = service({ domains: ['corp.internal'] })
    const valid = makeQuery('db.corp.internal', 'A', { edns: 1232 })
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          // Mutations of a valid query reach deeper than pure noise.
          fc.array(fc.tuple(fc.nat(valid.length - 1), fc.nat(255)), { maxLength: 6 }).map((muts) => {
            const b = Buffer.from(valid)
            for (const [i, v] of muts) b[i] = v
            return b
          }),
        ),
        fc.constantFrom('udp' as const, 'tcp' as const),
        async (buf, via) => {
          const r = await svc.handle(buf, via, client)
          if (r === undefined) return
          const h = readHeader(r)!
          expect(h.qr).toBe(true)
          expect(h.id).toBe(buf.readUInt16BE(0))
        },
      ),
      { numRuns: 500 },
    )
  })

  it('cached answers come back in well under a millisecond', async () => {
    const { svc } = service()
    const q = makeQuery('fast.example')
    await svc.handle(q, 'udp', client)
    const n = 5000
    const t0 = performance.now()
    for (let i = 0; i < n; i++) await svc.handle(q, 'udp', client)
    expect((performance.now() - t0) / n).toBeLessThan(0.1)
  })
})

describe('DnsService --fail-closed', () => {
  it('while the tunnel is down, tunnelled names are REFUSED at once (not even the cache answers); local names still go local', async () => {
    let down = false
    const tunnel = new FakeResolver('10.0.0.2:53')
    const local = new FakeResolver('192.168.1.1:53')
    const svc = new DnsService({ tunnel, local, policy: new SplitDnsPolicy(['corp.internal']), cache: new DnsCache(), refuseTunnel: () => down })
    expect(rcode((await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client))!)).toBe(Rcode.NOERROR)
    down = true
    const before = tunnel.asked.length
    expect(rcode((await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client))!)).toBe(Rcode.REFUSED)
    expect(rcode((await svc.handle(makeQuery('new.corp.internal', 'A'), 'tcp', client))!)).toBe(Rcode.REFUSED)
    expect(tunnel.asked.length).toBe(before)
    expect(rcode((await svc.handle(makeQuery('www.example.com', 'A'), 'udp', client))!)).toBe(Rcode.NOERROR)
    down = false
    expect(rcode((await svc.handle(makeQuery('db.corp.internal', 'A'), 'udp', client))!)).toBe(Rcode.NOERROR)
  })
})
