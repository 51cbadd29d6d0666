import { describe, expect, it } from 'vitest'
import * as dnsPacket from 'dns-packet'
import { decrementTtls, minAnswerTtl, minTtl, negativeTtl } from '../../src/dns/ttl'
import { Rcode, errorReply, parseQuery, readHeader, readName, sameQuestion, setId, truncateAnswer, udpLimit, withId } from '../../src/dns/wire'
import { a, bigAnswer, decode, makeAnswer, makeQuery, rcode, soa } from './helpers'

describe('parseQuery', () => {
  it('reads id, name, type, class and builds a case-insensitive key', () => {
    const q = parseQuery(makeQuery('Db.Corp.Internal', 'AAAA', { id: 0xbeef }))!
    expect(q).toMatchObject({ id: 0xbeef, name: 'Db.Corp.Internal', qtype: 28, qclass: 1, udpLimit: 512, dnssecOk: false })
    expect(q.key).toBe(parseQuery(makeQuery('db.corp.internal', 'AAAA'))!.key)
    expect(q.key).not.toBe(parseQuery(makeQuery('db.corp.internal', 'A'))!.key)
  })

  it('reads the EDNS0 payload size and DO bit from the OPT record', () => {
    const q = parseQuery(makeQuery('x.example', 'A', { edns: 4096, dnssecOk: true }))!
    expect(q.udpLimit).toBe(4096)
    expect(q.dnssecOk).toBe(true)
    expect(q.key).not.toBe(parseQuery(makeQuery('x.example', 'A', { edns: 4096 }))!.key)
  })

  it('clamps EDNS sizes below 512 up to 512 (RFC 6891)', () => {
    expect(udpLimit(makeQuery('x.example', 'A', { edns: 100 }))).toBe(512)
    expect(udpLimit(makeQuery('x.example', 'A', { edns: 65535 }))).toBe(65535)
  })

  it('rejects responses, zero or two questions, and truncated questions', () => {
    const q = makeQuery('x.example')
    expect(parseQuery(makeAnswer(q))).toBeUndefined()
    const two = Buffer.from(q)
    two.writeUInt16BE(2, 4)
    expect(parseQuery(two)).toBeUndefined()
    expect(parseQuery(q.subarray(0, q.length - 1))).toBeUndefined()
    expect(parseQuery(Buffer.alloc(5))).toBeUndefined()
  })

  it('escapes dots and odd bytes inside labels so they cannot fake a label boundary', () => {
    const msg = Buffer.concat([Buffer.from('000001000001000000000000', 'hex'), Buffer.from([3, 0x61, 0x2e, 0x62, 1, 0x63, 0]), Buffer.from([0, 1, 0, 1])])
    expect(parseQuery(msg)!.name).toBe('a\\046b.c')
  })
})

describe('readName', () => {
  it('follows compression pointers and refuses pointer loops', () => {
    // dns-packet does not compress, so build "mail.<pointer to the question name>" by hand.
    const q0 = makeQuery('www.example.com')
    const msg = Buffer.concat([q0, Buffer.from([4, 0x6d, 0x61, 0x69, 0x6c, 0xc0, 12 + 4])])
    const q = readName(msg, 12)!
    expect(q.name).toBe('www.example.com')
    expect(readName(msg, q0.length)).toEqual({ name: 'mail.example.com', end: q0.length + 7 })
    const loop = Buffer.from([0xc0, 0x00])
    expect(readName(loop, 0)).toBeUndefined()
  })
})

describe('error replies', () => {
  it('copies id, question and RD; sets QR, RA and the rcode', () => {
    const q = makeQuery('x.example', 'MX', { id: 777 })
    const r = errorReply(q, Rcode.SERVFAIL)!
    const p = decode(r)
    expect(p.id).toBe(777)
    expect(p.type).toBe('response')
    expect(p.flags! & dnsPacket.RECURSION_DESIRED).toBeTruthy()
    expect(p.flags! & dnsPacket.RECURSION_AVAILABLE).toBeTruthy()
    expect(p.questions).toEqual([{ name: 'x.example', type: 'MX', class: 'IN' }])
    expect(rcode(r)).toBe(Rcode.SERVFAIL)
    expect(p.answers).toEqual([])
  })

  it('answers with a bare header when the question is unreadable, nothing without a header', () => {
    const garbage = Buffer.concat([Buffer.from('abcd00010000000000000000', 'hex'), Buffer.from([63])])
    const r = errorReply(garbage, Rcode.FORMERR)!
    expect(r.length).toBe(12)
    expect(readHeader(r)).toMatchObject({ id: 0xabcd, qr: true, qdcount: 0, rcode: Rcode.FORMERR })
    expect(errorReply(Buffer.alloc(11), Rcode.FORMERR)).toBeUndefined()
  })
})

describe('ids', () => {
  it('setId and withId', () => {
    const q = makeQuery('x.example', 'A', { id: 1 })
    const c = withId(q, 0xffff)
    expect(decode(c).id).toBe(0xffff)
    expect(decode(q).id).toBe(1)
    setId(q, 42)
    expect(decode(q).id).toBe(42)
  })

  it('sameQuestion ignores case and ids but not type', () => {
    expect(sameQuestion(makeQuery('A.example', 'A', { id: 1 }), makeAnswer(makeQuery('a.EXAMPLE', 'A', { id: 9 })))).toBe(true)
    expect(sameQuestion(makeQuery('a.example', 'A'), makeQuery('a.example', 'AAAA'))).toBe(false)
  })
})

describe('TTLs', () => {
  const q = makeQuery('x.example')
  const ans = makeAnswer(q, { answers: [a('x.example', '10.0.0.1', 300), a('x.example', '10.0.0.2', 60)], authorities: [soa('example', 30, 10)] })

  it('minAnswerTtl looks at the answer section only; minTtl at all but OPT', () => {
    expect(minAnswerTtl(ans)).toBe(60)
    expect(minTtl(ans)).toBe(30)
    expect(minAnswerTtl(makeAnswer(q))).toBeUndefined()
  })

  it('decrementTtls lowers every TTL, floors at 0, leaves the OPT alone and does not touch the input', () => {
    const withOpt = dnsPacket.encode({
      type: 'response', id: 1, questions: [{ name: 'x.example', type: 'A' }],
      answers: [a('x.example', '10.0.0.1', 300), a('x.example', '10.0.0.2', 5)],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as unknown as dnsPacket.Answer],
    })
    const d = decrementTtls(withOpt, 10)!
    const p = decode(d)
    expect(p.answers!.map((x) => x.ttl)).toEqual([290, 0])
    const opt = p.additionals![0] as unknown as { udpPayloadSize: number; flags: number }
    expect(opt.udpPayloadSize).toBe(1232)
    expect(opt.flags & dnsPacket.DNSSEC_OK).toBeTruthy()
    expect(decode(withOpt).answers!.map((x) => x.ttl)).toEqual([300, 5])
  })

  it('treats TTLs with the top bit set as 0 (RFC 2181 8)', () => {
    const b = Buffer.from(makeAnswer(q, { answers: [a('x.example', '10.0.0.1', 300)] }))
    // Last record: … TTL(4) RDLENGTH(2) RDATA(4).
    b.writeUInt32BE(0x80000001, b.length - 4 - 2 - 4)
    expect(minAnswerTtl(b)).toBe(0)
  })

  it('negativeTtl is min(SOA TTL, SOA MINIMUM) from the authority section', () => {
    const nx = makeAnswer(q, { rcode: 'NXDOMAIN', authorities: [soa('example', 900, 120)] })
    expect(negativeTtl(nx)).toBe(120)
    expect(negativeTtl(makeAnswer(q, { rcode: 'NXDOMAIN', authorities: [soa('example', 45, 120)] }))).toBe(45)
    expect(negativeTtl(makeAnswer(q, { rcode: 'NXDOMAIN' }))).toBeUndefined()
  })
})

describe('truncateAnswer', () => {
  it('leaves answers within the limit untouched', () => {
    const small = makeAnswer(makeQuery('x.example'), { answers: [a('x.example', '1.1.1.1')] })
    expect(truncateAnswer(small, 512)).toBe(small)
  })

  it('cuts a large answer to header + question with TC=1', () => {
    const q = makeQuery('big.example', 'A', { id: 99 })
    const big = bigAnswer(q, 100)
    expect(big.length).toBeGreaterThan(512)
    const t = truncateAnswer(big, 512)!
    expect(t.length).toBeLessThanOrEqual(512)
    const p = decode(t)
    expect(p.id).toBe(99)
    expect(p.flag_tc).toBe(true)
    expect(p.answers).toEqual([])
    expect(p.questions![0].name).toBe('big.example')
  })

  it('keeps the OPT record when the answer had one', () => {
    const q = makeQuery('big.example', 'A', { edns: 1232 })
    const big = dnsPacket.encode({
      ...dnsPacket.decode(bigAnswer(q, 200)),
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as unknown as dnsPacket.Answer],
    })
    const t = truncateAnswer(big, 1232)!
    expect(t.length).toBeLessThanOrEqual(1232)
    expect(decode(t).additionals!.map((x) => x.type)).toEqual(['OPT'])
  })

  it('treats limits below 512 as 512', () => {
    const q = makeQuery('big.example')
    const mid = bigAnswer(q, 15) // just under 512
    expect(mid.length).toBeLessThanOrEqual(512)
    expect(truncateAnswer(mid, 100)).toBe(mid)
  })
})
