/**
 * IPv4 and IPv6 headers: parse what the TUN device hands us, build what we send back.
 * Pure functions over Buffers; nothing here allocates per byte.
 *
 * Fragments are not supported in either direction: the kernel only fragments when a packet
 * exceeds the device MTU, and every TCP segment we terminate fits (we advertise MSS = MTU - 40/60).
 * A fragment that does arrive (large UDP) is dropped and counted.
 */
import ipaddr from 'ipaddr.js'
import { finish, sum16 } from './checksum'

export const PROTO_ICMP = 1
export const PROTO_TCP = 6
export const PROTO_UDP = 17
export const PROTO_ICMPV6 = 58

/** Hop limit of everything we originate (Linux's default). */
export const TTL = 64

/** Where the interesting parts of a parsed IP packet are. The buffer is not copied. */
export interface IpPacket {
  readonly family: 4 | 6
  readonly buf: Buffer
  /** Offset of the source address; the destination follows at addrOff + addrLen. */
  readonly addrOff: number
  readonly addrLen: 4 | 16
  /** Transport protocol (after any IPv6 extension headers). */
  readonly proto: number
  /** Transport header offset, and the end of the packet per the IP length field. */
  readonly l4Off: number
  readonly end: number
}

/** Why parseIp refused a packet (counted by the stack). */
export type IpDrop = 'short' | 'version' | 'checksum' | 'length' | 'fragment' | 'ext-header'

// IPv6 extension headers we can walk over (RFC 8200 §4): hop-by-hop, routing, destination options.
// A routing header with segments left would need processing; the kernel never sends one to us.
const EXT_HOP = 0
const EXT_ROUTING = 43
const EXT_FRAGMENT = 44
const EXT_DSTOPTS = 60
const MAX_EXT = 8

/** Parses an IPv4 or IPv6 packet; returns a drop reason for anything we will not handle. */
export function parseIp(buf: Buffer): IpPacket | IpDrop {
  if (buf.length < 1) return 'short'
  const v = buf[0] >> 4
  if (v === 4) {
    if (buf.length < 20) return 'short'
    const ihl = (buf[0] & 0x0f) * 4
    const total = buf.readUInt16BE(2)
    if (ihl < 20 || total < ihl || total > buf.length) return 'length'
    if (finish(sum16(buf, 0, ihl)) !== 0) return 'checksum'
    // MF set or a non-zero offset: a fragment (the DF bit, 0x4000, is fine).
    if ((buf.readUInt16BE(6) & 0x3fff) !== 0) return 'fragment'
    return { family: 4, buf, addrOff: 12, addrLen: 4, proto: buf[9], l4Off: ihl, end: total }
  }
  if (v === 6) {
    if (buf.length < 40) return 'short'
    const end = 40 + buf.readUInt16BE(4)
    // Payload length 0 means a jumbogram (hop-by-hop option); a TUN never carries one.
    if (end > buf.length || end === 40) return 'length'
    let next = buf[6]
    let off = 40
    for (let n = 0; ; n++) {
      if (next === EXT_FRAGMENT) return 'fragment'
      if (next !== EXT_HOP && next !== EXT_ROUTING && next !== EXT_DSTOPTS) break
      if (n >= MAX_EXT || off + 8 > end) return 'ext-header'
      if (next === EXT_ROUTING && buf[off + 3] !== 0) return 'ext-header' // segments left
      next = buf[off]
      off += (buf[off + 1] + 1) * 8
      if (off > end) return 'ext-header'
    }
    return { family: 6, buf, addrOff: 8, addrLen: 16, proto: next, l4Off: off, end }
  }
  return 'version'
}

/** Unfolded sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 8200 §8.1). */
export function pseudoSum(addrs: Uint8Array, addrOff: number, addrLen: number, proto: number, l4Len: number): number {
  // For IPv6 the length is 32 bits and the next header sits in a 32-bit word: for lengths
  // under 64 KiB both sum to the same value as IPv4's layout.
  return sum16(addrs, addrOff, addrOff + 2 * addrLen) + proto + (l4Len >>> 16) + (l4Len & 0xffff)
}

/** IP header length we emit for a family (no options, no extension headers). */
export function ipHeaderLen(family: 4 | 6): number {
  return family === 4 ? 20 : 40
}

/**
 * Writes an IP header at the start of `out` for a payload of `l4Len` bytes.
 * `src` and `dst` are raw addresses (4 or 16 bytes). Returns the header length.
 */
export function writeIpHeader(out: Buffer, family: 4 | 6, src: Uint8Array, dst: Uint8Array, proto: number, l4Len: number): number {
  if (family === 4) {
    out[0] = 0x45
    out[1] = 0
    out.writeUInt16BE(20 + l4Len, 2)
    // ID 0 with DF is fine for atomic datagrams (RFC 6864 §4.1).
    out.writeUInt32BE(0x00004000, 4)
    out[8] = TTL
    out[9] = proto
    out[10] = 0
    out[11] = 0
    out.set(src, 12)
    out.set(dst, 16)
    out.writeUInt16BE(finish(sum16(out, 0, 20)), 10)
    return 20
  }
  out.writeUInt32BE(0x60000000, 0)
  out.writeUInt16BE(l4Len, 4)
  out[6] = proto
  out[7] = TTL
  out.set(src, 8)
  out.set(dst, 24)
  return 40
}

/** Text form of a raw address: dotted quad, or RFC 5952 for IPv6 (what RouteTable parses). */
export function formatAddress(buf: Uint8Array, off: number, len: 4 | 16): string {
  if (len === 4) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`
  return (ipaddr.fromByteArray(Array.from(buf.subarray(off, off + 16))) as ipaddr.IPv6).toRFC5952String()
}

/** Raw bytes of an IP literal (tests and callers that start from text). */
export function parseAddress(host: string): Buffer {
  return Buffer.from(ipaddr.parse(host).toByteArray())
}

/** True for destinations we must never answer with an ICMP error (RFC 1122 §3.2.2). */
export function isMulticastOrBroadcast(buf: Uint8Array, off: number, len: 4 | 16): boolean {
  // 224/4 multicast, 240/4 reserved and 255.255.255.255 all start at 224.
  if (len === 4) return buf[off] >= 224
  return buf[off] === 0xff
}
