/**
 * UDP (RFC 768) and the ICMP destination-unreachable messages we answer with: ICMPv4 type 3
 * (RFC 792) and ICMPv6 type 1 (RFC 4443 §3.1). Pure builders over Buffers.
 */
import { finish, sum16 } from './checksum'
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP, type IpPacket, ipHeaderLen, pseudoSum, writeIpHeader } from './ip'

/** A parsed UDP datagram; payload is a view into the packet. */
export interface UdpDatagram {
  readonly srcPort: number
  readonly dstPort: number
  readonly payload: Buffer
}

/** Parses the UDP datagram of an IP packet; undefined when malformed or the checksum is wrong. */
export function parseUdp(ip: IpPacket, verifyChecksum = true): UdpDatagram | undefined {
  const { buf, l4Off: o, end } = ip
  if (end - o < 8) return undefined
  const len = buf.readUInt16BE(o + 4)
  if (len < 8 || o + len > end) return undefined
  const ck = buf.readUInt16BE(o + 6)
  // Checksum 0 means "none" over IPv4; over IPv6 it is mandatory (RFC 8200 §8.1).
  if (ck === 0 && ip.family === 6) return undefined
  if (verifyChecksum && ck !== 0 && finish(sum16(buf, o, o + len, pseudoSum(buf, ip.addrOff, ip.addrLen, PROTO_UDP, len))) !== 0) {
    return undefined
  }
  return { srcPort: buf.readUInt16BE(o), dstPort: buf.readUInt16BE(o + 2), payload: buf.subarray(o + 8, o + len) }
}

/** Builds a UDP packet from src to dst (raw 4- or 16-byte addresses). */
export function buildUdp(family: 4 | 6, src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, payload: Uint8Array): Buffer {
  const udpLen = 8 + payload.length
  const pkt = Buffer.allocUnsafe(ipHeaderLen(family) + udpLen)
  const o = writeIpHeader(pkt, family, src, dst, PROTO_UDP, udpLen)
  pkt.writeUInt16BE(srcPort, o)
  pkt.writeUInt16BE(dstPort, o + 2)
  pkt.writeUInt16BE(udpLen, o + 4)
  pkt.writeUInt16BE(0, o + 6)
  pkt.set(payload, o + 8)
  const addrOff = family === 4 ? 12 : 8
  let ck = finish(sum16(pkt, o, pkt.length, pseudoSum(pkt, addrOff, src.length, PROTO_UDP, udpLen)))
  if (ck === 0) ck = 0xffff // 0 would mean "no checksum" (RFC 768)
  pkt.writeUInt16BE(ck, o + 6)
  return pkt
}

/** Why a destination is unreachable, as the application will see it (errno in parentheses). */
export type Unreachable = 'host' | 'port' | 'prohibited'

const V4_CODE: Record<Unreachable, number> = { host: 1, port: 3, prohibited: 13 } // EHOSTUNREACH, ECONNREFUSED, EHOSTUNREACH
const V6_CODE: Record<Unreachable, number> = { host: 3, port: 4, prohibited: 1 } // address / port unreachable, admin prohibited

// Quote as much of the offending packet as fits in the minimum MTU (RFC 1812 §4.3.2.3, RFC 4443 §2.4(c)).
const V4_MAX = 576
const V6_MAX = 1280

/**
 * The ICMP destination-unreachable answer to `ip`, sent as if from the address it was sent to
 * (the kernel matches the quoted header to the socket, not the ICMP source).
 */
export function buildUnreachable(ip: IpPacket, why: Unreachable): Buffer {
  const { buf, family, addrOff: a, addrLen: n } = ip
  const src = buf.subarray(a + n, a + 2 * n)
  const dst = buf.subarray(a, a + n)
  const hdr = ipHeaderLen(family)
  const quoted = Math.min(ip.end, (family === 4 ? V4_MAX : V6_MAX) - hdr - 8)
  const icmpLen = 8 + quoted
  const pkt = Buffer.allocUnsafe(hdr + icmpLen)
  const o = writeIpHeader(pkt, family, src, dst, family === 4 ? PROTO_ICMP : PROTO_ICMPV6, icmpLen)
  pkt[o] = family === 4 ? 3 : 1
  pkt[o + 1] = (family === 4 ? V4_CODE : V6_CODE)[why]
  pkt.writeUInt32BE(0, o + 2) // checksum, then 4 unused bytes
  pkt.writeUInt16BE(0, o + 6)
  buf.copy(pkt, o + 8, 0, quoted)
  // ICMPv4 sums the message only; ICMPv6 includes the pseudo-header.
  const init = family === 4 ? 0 : pseudoSum(pkt, 8, 16, PROTO_ICMPV6, icmpLen)
  pkt.writeUInt16BE(finish(sum16(pkt, o, pkt.length, init)), o + 2)
  return pkt
}
