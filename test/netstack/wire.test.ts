import { describe, expect, it } from 'vitest'
import { finish, sum16 } from '../../src/netstack/checksum'
import { type IpPacket, PROTO_TCP, PROTO_UDP, formatAddress, parseAddress, parseIp } from '../../src/netstack/ip'
import { ACK, FlowAddr, PSH, SYN, buildTcp, parseTcp, payloadOffset, sealTcp, synAckOptions } from '../../src/netstack/tcp-wire'
import { buildUdp, buildUnreachable, parseUdp } from '../../src/netstack/udp-icmp'

// Fixtures built with python3 struct and an independent RFC 1071 checksum (see the report):
// Linux-style SYN options (MSS 1460, SACK-permitted, timestamps, NOP, window scale 7).
const SYN4 = '4500003c00004000400624b70a0000020a0102039c4000500102030400000000a002faf0520d0000020405b40402080a112233440000000001030307'
const SYN6 = '6000000000280640fd000000000000000000000000000002fd0000010000000000000000000000039c4101bbfffffff000000000a002fd206e840000020405b40402080a112233440000000001030307'
const SYNACK4 = '4500003000004000400624c30a0102030a00000200509c40deadbeef010203057012ffff2fd10000020405b401030304'
const DATA6 = '6000000000210640fd000001000000000000000000000003fd00000000000000000000000000000201bb9c41000003e8000007d0501804d2a5e5000068656c6c6f2c20776f726c6421'
const UDP4 = '4500003900004000401124af0a0000020a01020314e9003500255945abcd01000001000000000000076578616d706c6503636f6d0000010001'
const UDP6 = '6000000000251140fd000000000000000000000000000002fd00000100000000000000000000000314e9003500257543abcd01000001000000000000076578616d706c6503636f6d0000010001'
const ICMP4 = '4500005500004000400124a30a0102030a00000203031339000000004500003900004000401124af0a0000020a01020314e9003500255945abcd01000001000000000000076578616d706c6503636f6d0000010001'
const ICMP6 = '6000000000553a40fd000001000000000000000000000003fd00000000000000000000000000000201049335000000006000000000251140fd000000000000000000000000000002fd00000100000000000000000000000314e9003500257543abcd01000001000000000000076578616d706c6503636f6d0000010001'

const hex = (h: string): Buffer => Buffer.from(h, 'hex')
function ip(h: string | Buffer): IpPacket {
  const p = parseIp(typeof h === 'string' ? hex(h) : h)
  if (typeof p === 'string') throw new Error(p)
  return p
}

describe('checksum', () => {
  it('matches RFC 1071 §3 example and handles odd lengths', () => {
    const b = Buffer.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])
    expect(finish(sum16(b, 0, b.length))).toBe(~0xddf2 & 0xffff)
    expect(finish(sum16(Buffer.from([0xab]), 0, 1))).toBe(~0xab00 & 0xffff)
    expect(finish(sum16(Buffer.from([0x12, 0x34, 0xab]), 0, 3))).toBe(~(0x1234 + 0xab00) & 0xffff)
  })
})

describe('IP parse', () => {
  it('parses IPv4 and IPv6 headers', () => {
    const v4 = ip(SYN4)
    expect(v4).toMatchObject({ family: 4, proto: PROTO_TCP, l4Off: 20, end: 60, addrOff: 12, addrLen: 4 })
    expect(formatAddress(v4.buf, 12, 4)).toBe('10.0.0.2')
    const v6 = ip(SYN6)
    expect(v6).toMatchObject({ family: 6, proto: PROTO_TCP, l4Off: 40, end: 80 })
    expect(formatAddress(v6.buf, 24, 16)).toBe('fd00:1::3')
  })

  it('drops truncated, corrupt and fragmented packets', () => {
    expect(parseIp(hex(SYN4).subarray(0, 30))).toBe('length')
    const bad = hex(SYN4)
    bad[8] = 1 // TTL changed, header checksum now wrong
    expect(parseIp(bad)).toBe('checksum')
    const frag = hex(UDP4)
    frag.writeUInt16BE(0x2000, 6) // MF
    frag.writeUInt16BE(0, 10)
    frag.writeUInt16BE(finish(sum16(frag, 0, 20)), 10)
    expect(parseIp(frag)).toBe('fragment')
    expect(parseIp(Buffer.from([0x50, 0, 0]))).toBe('version')
    expect(parseIp(Buffer.alloc(0))).toBe('short')
  })

  it('walks IPv6 extension headers and refuses fragments', () => {
    const base = hex(UDP6)
    // Insert an 8-byte destination-options header (next header = UDP, PadN).
    const ext = Buffer.from([PROTO_UDP, 0, 1, 4, 0, 0, 0, 0])
    const withExt = Buffer.concat([base.subarray(0, 40), ext, base.subarray(40)])
    withExt[6] = 60
    withExt.writeUInt16BE(base.length - 40 + 8, 4)
    const p = ip(withExt)
    expect(p.proto).toBe(PROTO_UDP)
    expect(p.l4Off).toBe(48)
    expect(parseUdp(p)?.dstPort).toBe(53)
    withExt[6] = 44
    expect(parseIp(withExt)).toBe('fragment')
  })
})

describe('TCP wire', () => {
  it('parses a Linux SYN with all its options', () => {
    const s = parseTcp(ip(SYN4))!
    expect(s).toMatchObject({ srcPort: 40000, dstPort: 80, seq: 0x01020304, flags: SYN, window: 64240, mss: 1460, wscale: 7, sackOk: true, tsVal: 0x11223344 })
    expect(s.payload.length).toBe(0)
    expect(parseTcp(ip(SYN6))!.seq).toBe(0xfffffff0)
  })

  it('rejects a bad checksum and a bad option length', () => {
    const b = hex(SYN4)
    b[b.length - 1] ^= 1
    expect(parseTcp(ip(b))).toBeUndefined()
    expect(parseTcp(ip(b), false)).toBeDefined()
    const o = hex(SYN4)
    o[40] = 2
    o[41] = 30 // MSS option claiming 30 bytes
    expect(parseTcp(ip(o), false)).toBeUndefined()
  })

  it('builds a SYN-ACK byte for byte', () => {
    const syn = ip(SYN4)
    const a = FlowAddr.fromPacket(syn, parseTcp(syn)!)
    const opts = synAckOptions(1460, 4)
    expect(sealTcp(a, buildTcp(a, 0xdeadbeef, 0x01020305, SYN | ACK, 65535, opts, 0)).toString('hex')).toBe(SYNACK4)
  })

  it('builds a data segment over IPv6 byte for byte', () => {
    const syn = ip(SYN6)
    const a = FlowAddr.fromPacket(syn, parseTcp(syn)!)
    const data = Buffer.from('hello, world!')
    const pkt = buildTcp(a, 1000, 2000, ACK | PSH, 1234, undefined, data.length)
    data.copy(pkt, payloadOffset(a, undefined))
    expect(sealTcp(a, pkt).toString('hex')).toBe(DATA6)
    expect(parseTcp(ip(pkt))!.payload.toString()).toBe('hello, world!')
  })
})

describe('UDP and ICMP', () => {
  it('parses and builds UDP over both families', () => {
    for (const h of [UDP4, UDP6]) {
      const p = ip(h)
      const d = parseUdp(p)!
      expect(d).toMatchObject({ srcPort: 5353, dstPort: 53 })
      const n = p.addrLen
      const built = buildUdp(p.family, p.buf.subarray(12 - (n === 4 ? 0 : 4), 12 - (n === 4 ? 0 : 4) + n), p.buf.subarray(p.addrOff + n, p.addrOff + 2 * n), 5353, 53, d.payload)
      expect(built.toString('hex')).toBe(h)
    }
  })

  it('drops a UDP datagram with a wrong checksum, or none over IPv6', () => {
    const b = hex(UDP4)
    b[b.length - 1] ^= 0xff
    expect(parseUdp(ip(b))).toBeUndefined()
    const z = hex(UDP6)
    z.writeUInt16BE(0, 46)
    expect(parseUdp(ip(z))).toBeUndefined()
  })

  it('builds port unreachable answers byte for byte', () => {
    expect(buildUnreachable(ip(UDP4), 'port').toString('hex')).toBe(ICMP4)
    expect(buildUnreachable(ip(UDP6), 'port').toString('hex')).toBe(ICMP6)
  })

  it('quotes at most what fits in the minimum MTU', () => {
    const big = buildUdp(4, parseAddress('10.0.0.2'), parseAddress('10.1.2.3'), 1, 2, Buffer.alloc(1400))
    expect(buildUnreachable(ip(big), 'host').length).toBe(576)
    const big6 = buildUdp(6, parseAddress('fd00::2'), parseAddress('fd00::3'), 1, 2, Buffer.alloc(1400))
    const icmp6 = buildUnreachable(ip(big6), 'prohibited')
    expect(icmp6.length).toBe(1280)
    expect([icmp6[40], icmp6[41]]).toEqual([1, 1])
  })
})
