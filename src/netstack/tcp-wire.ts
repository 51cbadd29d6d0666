/**
 * TCP header (RFC 9293 §3.1) parse and build, with the options we negotiate: MSS and window
 * scale (RFC 7323). SACK-permitted and timestamps are parsed but never offered back, so the
 * peer uses neither for this flow.
 */
import { finish, sum16 } from './checksum'
import { PROTO_TCP, type IpPacket, ipHeaderLen, pseudoSum, writeIpHeader } from './ip'

export const FIN = 0x01
export const SYN = 0x02
export const RST = 0x04
export const PSH = 0x08
export const ACK = 0x10

/** A parsed segment. `payload` is a view into the packet, not a copy. */
export interface TcpSegment {
  readonly srcPort: number
  readonly dstPort: number
  readonly seq: number
  readonly ack: number
  readonly flags: number
  readonly window: number
  readonly payload: Buffer
  /** Options (0 / -1 / false when absent). */
  readonly mss: number
  readonly wscale: number
  readonly sackOk: boolean
  readonly tsVal: number | undefined
}

/** Parses the TCP segment of an IP packet; undefined when malformed or the checksum is wrong. */
export function parseTcp(ip: IpPacket, verifyChecksum = true): TcpSegment | undefined {
  const { buf, l4Off: o, end } = ip
  if (end - o < 20) return undefined
  const hlen = (buf[o + 12] >> 4) * 4
  if (hlen < 20 || o + hlen > end) return undefined
  if (verifyChecksum && finish(sum16(buf, o, end, pseudoSum(buf, ip.addrOff, ip.addrLen, PROTO_TCP, end - o))) !== 0) return undefined
  let mss = 0
  let wscale = -1
  let sackOk = false
  let tsVal: number | undefined
  for (let i = o + 20, stop = o + hlen; i < stop; ) {
    const kind = buf[i]
    if (kind === 0) break // end of options
    if (kind === 1) {
      i++ // NOP
      continue
    }
    const len = i + 1 < stop ? buf[i + 1] : 0
    if (len < 2 || i + len > stop) return undefined
    if (kind === 2 && len === 4) mss = buf.readUInt16BE(i + 2)
    else if (kind === 3 && len === 3) wscale = Math.min(buf[i + 2], 14) // RFC 7323 §2.3: clamp to 14
    else if (kind === 4 && len === 2) sackOk = true
    else if (kind === 8 && len === 10) tsVal = buf.readUInt32BE(i + 2)
    i += len
  }
  return {
    srcPort: buf.readUInt16BE(o),
    dstPort: buf.readUInt16BE(o + 2),
    seq: buf.readUInt32BE(o + 4),
    ack: buf.readUInt32BE(o + 8),
    flags: buf[o + 13],
    window: buf.readUInt16BE(o + 14),
    payload: buf.subarray(o + hlen, end),
    mss,
    wscale,
    sackOk,
    tsVal,
  }
}

/**
 * The fixed addressing of one flow, from our side: we answer as the destination the app
 * dialled (`local`), to the app (`remote`). The pseudo-header's address part is summed once.
 */
export class FlowAddr {
  readonly ipLen: number
  private readonly addrSum: number

  constructor(
    readonly family: 4 | 6,
    readonly local: Buffer,
    readonly remote: Buffer,
    readonly localPort: number,
    readonly remotePort: number,
  ) {
    this.ipLen = ipHeaderLen(family)
    this.addrSum = sum16(local, 0, local.length) + sum16(remote, 0, remote.length)
  }

  /** The flow as seen in an incoming packet (src = app, dst = what it dialled). */
  static fromPacket(ip: IpPacket, seg: TcpSegment): FlowAddr {
    const a = ip.addrOff
    const n = ip.addrLen
    // Copies: the flow outlives the packet buffer it was learnt from.
    return new FlowAddr(ip.family, Buffer.from(ip.buf.subarray(a + n, a + 2 * n)), Buffer.from(ip.buf.subarray(a, a + n)), seg.dstPort, seg.srcPort)
  }

  /** Unfolded pseudo-header sum for a TCP segment of l4Len bytes. */
  pseudo(proto: number, l4Len: number): number {
    return this.addrSum + proto + (l4Len >>> 16) + (l4Len & 0xffff)
  }
}

/** Options for our SYN-ACK: MSS, and window scale only when the peer offered it. */
export function synAckOptions(mss: number, wscale: number | undefined): Buffer {
  const o = Buffer.alloc(wscale === undefined ? 4 : 8)
  o[0] = 2
  o[1] = 4
  o.writeUInt16BE(mss, 2)
  if (wscale !== undefined) {
    o[4] = 1 // NOP, so the option block stays 32-bit aligned
    o[5] = 3
    o[6] = 3
    o[7] = wscale
  }
  return o
}

/**
 * Allocates one whole packet (IP + TCP header + room for `payloadLen` bytes) and fills the
 * headers. The caller copies the payload at the returned packet's `payloadOffset(...)` and then
 * calls sealTcp — one allocation and one copy per segment.
 */
export function buildTcp(a: FlowAddr, seq: number, ack: number, flags: number, window: number, options: Buffer | undefined, payloadLen: number): Buffer {
  const optLen = options ? options.length : 0
  const tcpLen = 20 + optLen + payloadLen
  const pkt = Buffer.allocUnsafe(a.ipLen + tcpLen)
  const o = writeIpHeader(pkt, a.family, a.local, a.remote, PROTO_TCP, tcpLen)
  pkt.writeUInt16BE(a.localPort, o)
  pkt.writeUInt16BE(a.remotePort, o + 2)
  pkt.writeUInt32BE(seq >>> 0, o + 4)
  pkt.writeUInt32BE(ack >>> 0, o + 8)
  pkt[o + 12] = ((20 + optLen) / 4) << 4
  pkt[o + 13] = flags
  pkt.writeUInt16BE(window, o + 14)
  pkt.writeUInt32BE(0, o + 16) // checksum + urgent pointer
  if (options) options.copy(pkt, o + 20)
  return pkt
}

/** Offset where a segment's payload goes in a packet from buildTcp. */
export function payloadOffset(a: FlowAddr, options: Buffer | undefined): number {
  return a.ipLen + 20 + (options ? options.length : 0)
}

/** Computes the TCP checksum once the payload is in place. */
export function sealTcp(a: FlowAddr, pkt: Buffer): Buffer {
  const o = a.ipLen
  pkt.writeUInt16BE(finish(sum16(pkt, o, pkt.length, a.pseudo(PROTO_TCP, pkt.length - o))), o + 16)
  return pkt
}

/** Sequence-space comparisons modulo 2^32 (RFC 9293 §3.4). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0
}
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0
}
/** b - a in sequence space (may be negative). */
export function seqDiff(b: number, a: number): number {
  return (b - a) | 0
}
