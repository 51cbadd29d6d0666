/**
 * A userspace TCP/IP endpoint for a TUN device: every TCP connection the local applications
 * open through the device is terminated here and handed over as a Duplex (openTcp); UDP goes
 * to a handler (DNS); everything else gets a clear answer (RST, ICMP unreachable) or is dropped
 * and counted. Pure: packets in through input(), out through opts.send, time through opts.timers.
 *
 * Packet buffers passed to input() are kept (payload views go into the Duplex and the
 * reorder queue without a copy), so the caller must not reuse them.
 */
import { randomInt } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { Logger } from '../observe/logger'
import { type IpPacket, PROTO_TCP, PROTO_UDP, formatAddress, isMulticastOrBroadcast, parseIp } from './ip'
import { type ByteCounters, DEFAULT_TCP_CONFIG, type TcpConfig, TcpConn, type TcpHost, type Timers } from './tcp-conn'
import { ACK, FIN, FlowAddr, RST, SYN, type TcpSegment, buildTcp, parseTcp, sealTcp } from './tcp-wire'
import { type Unreachable, buildUdp, buildUnreachable, parseUdp } from './udp-icmp'
import { FlowRefused } from './refusal'

export type { Timers, TcpConfig, ByteCounters }

/** One side of a flow as text (what the router and logs use). */
export interface Endpoint {
  readonly host: string
  readonly port: number
  readonly family: 4 | 6
}

export interface StackOptions {
  /** Sends one IP packet to the device. */
  send(packet: Buffer): void
  /** Called on a SYN to a new flow. The SYN-ACK is sent only once this resolves; on rejection the
   * stack answers ICMP host unreachable for a FlowRefused('host-unreachable'), else RST. */
  openTcp(src: Endpoint, dst: Endpoint): Promise<Duplex>
  /** UDP datagram (DNS on port 53 goes here); return the reply payload, or undefined for none.
   * When absent or when it rejects with FlowRefused('port-unreachable'), the stack answers ICMP
   * port unreachable; any other failure drops the datagram. */
  udp?(src: Endpoint, dst: Endpoint, payload: Buffer): Promise<Buffer | undefined>
  mtu?: number
  /** Timers (tests inject a fake clock). Default: setTimeout/clearTimeout, unref'd; a 0 ms timer
   * (the end-of-burst ACK flush) is a setImmediate, which runs after the pending I/O callbacks. */
  timers?: Timers
  log?: Logger
  /** Live byte counters for a flow's Duplex (e.g. the ConnTracker entry); called once per flow. */
  counters?(duplex: Duplex): ByteCounters | undefined
  /** TCP tunables (tests shrink buffers and timeouts). */
  tcp?: Partial<TcpConfig>
}

/** Counters for status output. */
export interface StackStats {
  tcpActive: number
  tcpTotal: number
  udp: number
  dropped: number
  resets: number
}

// A burst of SYNs (a scanner, a runaway client) must not grow the table without bound.
const MAX_FLOWS = 65_536

const defaultTimers: Timers = {
  set: (fn, ms) => (ms <= 0 ? { imm: setImmediate(fn) } : setTimeout(fn, ms).unref()),
  clear: (h) => {
    if (h !== null && typeof h === 'object' && 'imm' in h) clearImmediate((h as { imm: NodeJS.Immediate }).imm)
    else clearTimeout(h as NodeJS.Timeout)
  },
  now: () => performance.now(),
}

export class NetStack implements TcpHost {
  readonly timers: Timers
  readonly config: TcpConfig
  private readonly mtu: number
  private readonly flows = new Map<string, TcpConn>()
  private ackQueue: { flush(): void }[] = []
  private flushTimer: unknown
  private closed = false
  private readonly st: StackStats = { tcpActive: 0, tcpTotal: 0, udp: 0, dropped: 0, resets: 0 }

  constructor(private readonly opts: StackOptions) {
    this.timers = opts.timers ?? defaultTimers
    this.config = { ...DEFAULT_TCP_CONFIG, ...opts.tcp }
    // 1280: the IPv6 minimum; 65535: the largest IP packet, and MSS = MTU − 40 must fit 16 bits.
    this.mtu = Math.min(65535, Math.max(1280, opts.mtu ?? 1500))
  }

  /** One IP packet from the device. Never throws: malformed packets are counted and dropped. */
  input(packet: Buffer): void {
    if (this.closed) return
    try {
      const ip = parseIp(packet)
      if (typeof ip === 'string') return this.drop(ip)
      if (ip.proto === PROTO_TCP) this.tcp(ip)
      else if (ip.proto === PROTO_UDP) this.udp(ip)
      else this.drop(`protocol ${ip.proto}`) // ICMP echo, router solicitations, MLD: not carried
    } catch (e) {
      this.drop(`internal error: ${String(e)}`)
    }
  }

  stats(): StackStats {
    return { ...this.st, tcpActive: this.flows.size }
  }

  /** Resets every flow and stops answering. */
  close(): void {
    this.closed = true
    if (this.flushTimer !== undefined) this.timers.clear(this.flushTimer)
    for (const c of [...this.flows.values()]) c.abort(new Error('the tunnel is shutting down'))
    this.flows.clear()
  }

  // ---- TcpHost ---------------------------------------------------------------------------

  send(packet: Buffer): void {
    this.opts.send(packet)
  }

  deferAck(flow: { flush(): void }): void {
    this.ackQueue.push(flow)
    if (this.flushTimer === undefined) this.flushTimer = this.timers.set(this.flushAcks, 0)
  }

  done(flow: { readonly key: string }): void {
    if (this.flows.get(flow.key) === flow) this.flows.delete(flow.key)
  }

  sentReset(): void {
    this.st.resets++
  }

  private readonly flushAcks = (): void => {
    this.flushTimer = undefined
    const q = this.ackQueue
    this.ackQueue = []
    for (const c of q) c.flush()
  }

  // ---- TCP ---------------------------------------------------------------------------------

  private tcp(ip: IpPacket): void {
    const seg = parseTcp(ip)
    if (!seg) return this.drop('bad TCP segment')
    const b = ip.buf
    // Addresses and ports as a string: the cheapest Map key V8 offers for raw bytes.
    const key = b.toString('latin1', ip.addrOff, ip.addrOff + 2 * ip.addrLen) + b.toString('latin1', ip.l4Off, ip.l4Off + 4)
    const conn = this.flows.get(key)
    if (conn) {
      if (conn.input(seg) !== 'reopen') return
      conn.discard()
    }
    if ((seg.flags & (SYN | ACK | RST | FIN)) === SYN && this.flows.size < MAX_FLOWS) return this.open(ip, seg, key)
    // No such connection (RFC 9293 §3.10.7.1): answer anything but an RST with an RST.
    if (!(seg.flags & RST)) this.resetUnknown(ip, seg)
  }

  private open(ip: IpPacket, seg: TcpSegment, key: string): void {
    const addr = FlowAddr.fromPacket(ip, seg)
    const conn = new TcpConn(this, addr, seg, this.mtu - (ip.family === 4 ? 40 : 60), randomInt(0x1_0000_0000))
    conn.key = key
    this.flows.set(key, conn)
    this.st.tcpTotal++
    const src: Endpoint = { host: formatAddress(addr.remote, 0, ip.addrLen), port: seg.srcPort, family: ip.family }
    const dst: Endpoint = { host: formatAddress(addr.local, 0, ip.addrLen), port: seg.dstPort, family: ip.family }
    const syn = copyPacket(ip) // quoted by an ICMP answer later; the original buffer is not ours to keep that long
    let p: Promise<Duplex>
    try {
      p = this.opts.openTcp(src, dst)
    } catch (e) {
      p = Promise.reject(e)
    }
    p.then(
      (d) => conn.accept(d, this.opts.counters?.(d)),
      (err: unknown) => {
        if (conn.state !== 'opening') return
        if (err instanceof FlowRefused && err.answer === 'host-unreachable') {
          this.unreachable(syn, 'host')
          conn.discard()
        } else {
          conn.abort() // RST: the application sees ECONNREFUSED
        }
      },
    ).catch((e: unknown) => this.opts.log?.debug('route', `tun: flow setup failed: ${String(e)}`))
  }

  private resetUnknown(ip: IpPacket, seg: TcpSegment): void {
    const addr = FlowAddr.fromPacket(ip, seg)
    const pkt =
      seg.flags & ACK
        ? buildTcp(addr, seg.ack, 0, RST, 0, undefined, 0)
        : buildTcp(addr, 0, seg.seq + seg.payload.length + (seg.flags & SYN ? 1 : 0) + (seg.flags & FIN ? 1 : 0), RST | ACK, 0, undefined, 0)
    this.st.resets++
    this.opts.send(sealTcp(addr, pkt))
  }

  // ---- UDP ---------------------------------------------------------------------------------

  private udp(ip: IpPacket): void {
    const d = parseUdp(ip)
    if (!d) return this.drop('bad UDP datagram')
    this.st.udp++
    const handler = this.opts.udp
    if (!handler) return this.unreachable(ip, 'port')
    const n = ip.addrLen
    const a = ip.addrOff
    const srcAddr = Buffer.from(ip.buf.subarray(a, a + n))
    const dstAddr = Buffer.from(ip.buf.subarray(a + n, a + 2 * n))
    const src: Endpoint = { host: formatAddress(srcAddr, 0, n), port: d.srcPort, family: ip.family }
    const dst: Endpoint = { host: formatAddress(dstAddr, 0, n), port: d.dstPort, family: ip.family }
    const orig = copyPacket(ip)
    let p: Promise<Buffer | undefined>
    try {
      p = handler(src, dst, d.payload)
    } catch (e) {
      p = Promise.reject(e)
    }
    p.then(
      (reply) => {
        if (!reply || this.closed) return
        const pkt = buildUdp(ip.family, dstAddr, srcAddr, d.dstPort, d.srcPort, reply)
        // No fragmentation: an answer too big for the MTU is dropped (DNS sizes its UDP
        // answers to the client's EDNS limit; past that the client retries over TCP).
        if (pkt.length > this.mtu) return this.drop(`UDP reply of ${reply.length} B exceeds the MTU`)
        this.opts.send(pkt)
      },
      (err: unknown) => {
        if (err instanceof FlowRefused && err.answer === 'port-unreachable') this.unreachable(orig, 'port')
        else this.drop(`UDP handler failed: ${String(err)}`)
      },
    )
  }

  private unreachable(ip: IpPacket, why: Unreachable): void {
    if (this.closed || isMulticastOrBroadcast(ip.buf, ip.addrOff + ip.addrLen, ip.addrLen)) return
    this.opts.send(buildUnreachable(ip, why))
  }

  private drop(why: string): void {
    this.st.dropped++
    if (this.opts.log?.enabled('debug')) this.opts.log.debug('route', `tun: dropped a packet: ${why}`)
  }
}

function copyPacket(ip: IpPacket): IpPacket {
  return { ...ip, buf: Buffer.from(ip.buf.subarray(0, ip.end)) }
}
