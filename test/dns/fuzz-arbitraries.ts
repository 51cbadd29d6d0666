/** fast-check generators of DNS messages shared by the *.fuzz.test.ts files of test/dns. */
import fc from 'fast-check'
import * as dnsPacket from 'dns-packet'

const label = fc.stringMatching(/^[a-zA-Z0-9_-]{1,63}$/)
/** Names within the 255-byte wire limit (each label costs its length + 1, plus the root byte). */
export const dnsName = fc
  .array(label, { minLength: 1, maxLength: 6 })
  .filter((ls) => ls.reduce((n, l) => n + l.length + 1, 1) <= 255)
  .map((ls) => ls.join('.'))

const ttl = fc.nat(0x7fffffff)
export const rr: fc.Arbitrary<dnsPacket.Answer> = fc.oneof(
  fc.record({ type: fc.constant('A' as const), name: dnsName, ttl, data: fc.ipV4() }),
  fc.record({ type: fc.constant('AAAA' as const), name: dnsName, ttl, data: fc.ipV6() }),
  fc.record({ type: fc.constant('CNAME' as const), name: dnsName, ttl, data: dnsName }),
  fc.record({ type: fc.constant('NS' as const), name: dnsName, ttl, data: dnsName }),
  fc.record({ type: fc.constant('TXT' as const), name: dnsName, ttl, data: fc.array(fc.string({ maxLength: 40 }), { minLength: 1, maxLength: 3 }) }),
  fc.record({ type: fc.constant('MX' as const), name: dnsName, ttl, data: fc.record({ preference: fc.nat(65535), exchange: dnsName }) }),
  fc.record({
    type: fc.constant('SOA' as const),
    name: dnsName,
    ttl,
    data: fc.record({ mname: dnsName, rname: dnsName, serial: fc.nat(), refresh: fc.nat(), retry: fc.nat(), expire: fc.nat(), minimum: fc.nat() }),
  }),
) as fc.Arbitrary<dnsPacket.Answer>

const qtype = fc.constantFrom<dnsPacket.RecordType>('A', 'AAAA', 'MX', 'TXT', 'SOA', 'PTR', 'SRV', 'CAA')

/** Well-formed messages of every shape dns-packet can encode: queries and answers, EDNS or not. */
export const packet = fc
  .record({
    id: fc.nat(0xffff),
    response: fc.boolean(),
    name: dnsName,
    qtype,
    answers: fc.array(rr, { maxLength: 6 }),
    authorities: fc.array(rr, { maxLength: 3 }),
    edns: fc.option(fc.record({ size: fc.integer({ min: 1, max: 0xffff }), dnssecOk: fc.boolean() }), { nil: undefined }),
  })
  .map((p) => ({
    ...p,
    buf: dnsPacket.encode({
      type: p.response ? 'response' : 'query',
      id: p.id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: p.name, type: p.qtype, class: 'IN' }],
      answers: p.answers,
      authorities: p.authorities,
      additionals:
        p.edns === undefined
          ? []
          : [{ type: 'OPT', name: '.', udpPayloadSize: p.edns.size, flags: p.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer],
    }),
  }))

/** A valid packet with a few random bytes overwritten: mostly-plausible input reaches deep code paths. */
export const mutated = fc
  .tuple(packet, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 }))
  .map(([p, edits]) => {
    const b = Buffer.from(p.buf)
    for (const [at, v] of edits) b[at % b.length] = v
    return b
  })

export const randomBytes = fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b))
export const anyMessage = fc.oneof(randomBytes, mutated, packet.map((p) => p.buf))

/** Well-formed A answers (dns-packet), with the TTLs they carry: for the TTL and truncation checks. */
export const aAnswers = fc
  .record({
    id: fc.nat(0xffff),
    name: fc.array(fc.stringMatching(/^[a-z0-9-]{1,20}$/), { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
    recs: fc.array(fc.record({ ttl: fc.integer({ min: 0, max: 0x7fffffff }), ip: fc.ipV4() }), { maxLength: 120 }),
    edns: fc.option(fc.integer({ min: 512, max: 65535 }), { nil: undefined }),
  })
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
