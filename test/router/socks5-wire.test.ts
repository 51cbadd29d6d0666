import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  Cmd,
  Rep,
  buildGreeting,
  buildReply,
  buildRequest,
  buildUserPass,
  formatIpv6,
  parseGreeting,
  parseIpv6,
  parseRequest,
  parseUserPass,
} from '../../src/router/socks5-wire'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

describe('socks5 greeting', () => {
  it('parses methods and reports the bytes consumed', () => {
    const r = parseGreeting(hex('05 02 00 02 ff ee'))
    expect(r).toEqual({ status: 'done', value: { methods: [0, 2] }, consumed: 4 })
  })
  it('asks for more on every strict prefix', () => {
    const full = hex('05 03 00 01 02')
    for (let i = 0; i < full.length; i++) expect(parseGreeting(full.subarray(0, i)).status).toBe('more')
  })
  it('rejects SOCKS4 and an empty method list', () => {
    expect(parseGreeting(hex('04 01 00 50'))).toMatchObject({ status: 'bad' })
    expect(parseGreeting(hex('05 00'))).toMatchObject({ status: 'bad' })
  })
})

describe('socks5 username/password (RFC 1929)', () => {
  it('round-trips credentials including UTF-8 and empty password', () => {
    for (const [u, p] of [['alice', 's3cret'], ['jörg', ''], ['', 'x']] as const) {
      const r = parseUserPass(Buffer.concat([buildUserPass(u, p), hex('05')]))
      expect(r.status).toBe('done')
      if (r.status !== 'done') return
      expect(r.value.username.toString()).toBe(u)
      expect(r.value.password.toString()).toBe(p)
      expect(r.consumed).toBe(buildUserPass(u, p).length)
    }
  })
  it('rejects the wrong sub-negotiation version', () => {
    expect(parseUserPass(hex('05 01 61 01 62'))).toMatchObject({ status: 'bad' })
  })
})

describe('socks5 request', () => {
  it('parses IPv4 CONNECT', () => {
    expect(parseRequest(hex('05 01 00 01 0a 00 01 14 0c ea'))).toEqual({
      status: 'done',
      value: { cmd: 1, atyp: 'ipv4', host: '10.0.1.20', port: 3306 },
      consumed: 10,
    })
  })
  it('parses IPv6 correctly (all 16 bytes, RFC 5952 text)', () => {
    const r = parseRequest(hex('05 01 00 04 fd00 0000 0000 0000 0000 0000 0000 0001 01bb'))
    expect(r).toMatchObject({ status: 'done', value: { atyp: 'ipv6', host: 'fd00::1', port: 443 }, consumed: 22 })
    const r2 = parseRequest(hex('05 01 00 04 2001 0db8 0000 0000 0001 0000 0000 0001 0050'))
    expect(r2).toMatchObject({ value: { host: '2001:db8::1:0:0:1' } })
  })
  it('passes domain names through untouched and keeps pipelined bytes unconsumed', () => {
    const req = buildRequest(Cmd.CONNECT, 'db.corp.internal', 5432)
    const r = parseRequest(Buffer.concat([req, Buffer.from('GET / HTTP/1.1\r\n')]))
    expect(r).toMatchObject({ status: 'done', value: { atyp: 'domain', host: 'db.corp.internal', port: 5432 }, consumed: req.length })
  })
  it('answers unsupported address types and bad names with the right REP', () => {
    expect(parseRequest(hex('05 01 00 05 00 00'))).toMatchObject({ status: 'bad', reply: Rep.ADDRESS_TYPE_NOT_SUPPORTED })
    expect(parseRequest(hex('05 01 00 03 00 00 50'))).toMatchObject({ status: 'bad', reply: Rep.HOST_UNREACHABLE })
    expect(parseRequest(hex('05 01 00 03 03 61 00 62 00 50'))).toMatchObject({ status: 'bad', reply: Rep.HOST_UNREACHABLE })
  })
  it('returns BIND and UDP ASSOCIATE as parsed commands (the server answers 0x07)', () => {
    expect(parseRequest(buildRequest(Cmd.BIND, '1.2.3.4', 1))).toMatchObject({ status: 'done', value: { cmd: 2 } })
    expect(parseRequest(buildRequest(Cmd.UDP_ASSOCIATE, '::', 0))).toMatchObject({ status: 'done', value: { cmd: 3, host: '::' } })
  })
})

describe('socks5 replies', () => {
  it('are complete: 10 bytes for IPv4, 22 for IPv6', () => {
    expect(buildReply(Rep.CONNECTION_REFUSED)).toEqual(hex('05 05 00 01 00000000 0000'))
    const v6 = buildReply(Rep.SUCCEEDED, { host: '::1', port: 1080 })
    expect(v6.length).toBe(22)
    expect(v6.subarray(0, 4)).toEqual(hex('05 00 00 04'))
    expect(v6.readUInt16BE(20)).toBe(1080)
    expect(v6[19]).toBe(1)
  })
})

describe('IPv6 text', () => {
  it('formats per RFC 5952', () => {
    const f = (s: string): string => formatIpv6(parseIpv6(s)!)
    expect(f('0:0:0:0:0:0:0:0')).toBe('::')
    expect(f('2001:DB8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1') // first of equal runs
    expect(f('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1') // a single 0 is not compressed
    expect(f('::ffff:10.0.0.1')).toBe('::ffff:10.0.0.1')
    expect(f('64:ff9b::1.2.3.4')).toBe('64:ff9b::102:304')
    expect(parseIpv6('1::2::3')).toBeUndefined()
    expect(parseIpv6('1:2:3:4:5:6:7:8:9')).toBeUndefined()
  })
})

describe('fuzzing', () => {
  it('random bytes never throw, and "done" never consumes more than given', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (a) => {
        const b = Buffer.from(a)
        for (const p of [parseGreeting, parseUserPass, parseRequest]) {
          const r = p(b)
          if (r.status === 'done') expect(r.consumed).toBeLessThanOrEqual(b.length)
        }
      }),
      { numRuns: 3000 },
    )
  })
  it('requests with a SOCKS5 header and random tails never throw', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 6 }), fc.uint8Array({ maxLength: 300 }), (cmd, atyp, tail) => {
        const b = Buffer.concat([Buffer.from([5, cmd, 0, atyp]), Buffer.from(tail)])
        const r = parseRequest(b)
        expect(['more', 'bad', 'done']).toContain(r.status)
      }),
      { numRuns: 3000 },
    )
  })
  const host = fc.oneof(
    fc.ipV4(),
    fc.ipV6().map((s) => formatIpv6(parseIpv6(s)!)),
    fc.domain(),
  )
  it('valid requests round-trip, split at any point', () => {
    fc.assert(
      fc.property(host, fc.integer({ min: 0, max: 65535 }), fc.nat(), (h, port, cut) => {
        const b = buildRequest(Cmd.CONNECT, h, port)
        const r = parseRequest(b)
        expect(r).toMatchObject({ status: 'done', value: { host: h, port, cmd: 1 }, consumed: b.length })
        // Any strict prefix is "more", never "bad" or a wrong "done".
        expect(parseRequest(b.subarray(0, cut % b.length)).status).toBe('more')
      }),
      { numRuns: 2000 },
    )
  })
  it('IPv6 parse/format is a bijection on 16-byte values', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
        const b = Buffer.from(a)
        expect(parseIpv6(formatIpv6(b))).toEqual(b)
      }),
      { numRuns: 3000 },
    )
  })
  it('greetings and credentials round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 255 }), fc.string({ maxLength: 60 }), fc.string({ maxLength: 60 }), (methods, u, p) => {
        expect(parseGreeting(buildGreeting([...methods]))).toMatchObject({ status: 'done', value: { methods: [...methods] } })
        const up = parseUserPass(buildUserPass(u, p))
        expect(up.status).toBe('done')
        if (up.status === 'done') expect([up.value.username.toString(), up.value.password.toString()]).toEqual([u, p])
      }),
    )
  })
})
