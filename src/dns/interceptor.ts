import dgram from 'node:dgram'
import net from 'node:net'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import { silentLogger } from '../observe/logger'
import type { DescriptorReserve } from '../router/descriptor-reserve'
import { HANDSHAKE_LIMITS, HandshakeGuard } from '../router/handshake-guard'
import { FrameDecoder, frame } from './framing'
import type { ClientAddress, Transport } from './types'
import { resetSocket } from '../router/socket-reset'
import { formatHostPort } from '../config/host-port'

/** What the interceptor calls for every query (a DnsService). */
export interface DnsHandler {
  handle(query: Buffer, via: Transport, client: ClientAddress): Promise<Buffer | undefined>
}

export interface DnsInterceptorOptions {
  readonly handler: DnsHandler
  /** Port for UDP and TCP on 127.0.0.1 (and ::1); 0 picks a free one (the same for all). */
  readonly port: number
  /** Also serve ::1 (and :: with gatewayPort): IPv6 nameservers are captured. */
  readonly ipv6: boolean
  /**
   * Gateway mode: also serve 0.0.0.0 (and ::) on this port, a second one (0 picks a free one),
   * for the queries the kernel redirects from other hosts to the incoming interface's address.
   * Absent: loopback only.
   */
  readonly gatewayPort?: number
  /** Serve UDP too (default true). The TUN engine answers UDP itself and needs TCP only. */
  readonly udp?: boolean
  /**
   * Start with UDP held: datagrams are dropped unanswered until answerUdp(true). For a port
   * that the kernel guards (only redirected packets get through), until the guard is in place.
   */
  readonly holdUdp?: boolean
  /**
   * Whether a TCP connection was redirected to us by our rules (SO_ORIGINAL_DST names a
   * captured server's port 53). Others are reset: nobody may use the interceptor directly.
   * Absent: every connection is served (the TUN engine connects directly).
   */
  readonly isRedirected?: (socket: net.Socket, family: 4 | 6) => boolean
  /** Queries one TCP connection may have outstanding; beyond it reading pauses (default 64). */
  readonly maxInFlightPerConnection?: number
  /**
   * A TCP connection with no query in flight must complete its next query within this (default
   * 10 s, RFC 7766 6.2.3), counted from when it became idle: bytes trickling in do not extend it.
   */
  readonly tcpIdleMs?: number
  /** Most TCP connections at once; more are reset (default 1024). */
  readonly maxTcpConnections?: number
  /** Most TCP connections at once from one address (IPv6: one /64) (default 256). */
  readonly maxTcpPerSource?: number
  /** New TCP connections are reset while free descriptors are below this reserve. */
  readonly reserve?: DescriptorReserve
  readonly log?: Logger
}

/**
 * The local DNS endpoint the kernel redirects captured port-53 traffic to: UDP and TCP on
 * 127.0.0.1 (and ::1), one port for all four; in gateway mode also on 0.0.0.0 (and ::) on a
 * second port. Two ports, because a UDP socket answers from the source address the route to
 * the client picks, and conntrack gives an answer the nameserver's address back only when it
 * comes from where the query was redirected to: this machine's own queries (from its outgoing
 * address, redirected to 127.0.0.1) need a socket bound to 127.0.0.1, forwarded clients' (to
 * the incoming interface's address, which may change) one bound to 0.0.0.0, and both cannot
 * share a port without SO_REUSEADDR, which would let another local user bind it too.
 * TCP connections may pipeline queries; answers go back as they complete, in any order (RFC
 * 7766 6.2.1.1). Nothing a client sends can crash it: the handler never throws and socket
 * errors only close that connection.
 *
 * It must answer only what our rules redirected (in gateway mode it listens on every address,
 * and with --owner-only other local users' queries are not redirected): TCP connections are
 * checked with `isRedirected` (SO_ORIGINAL_DST); for UDP, where a socket cannot learn a
 * datagram's original destination, a kernel rule drops what conntrack did not redirect
 * (platform/firewall/capture-scope.ts), and `holdUdp` keeps UDP unanswered until that rule exists.
 */
export class DnsInterceptor {
  private readonly udp: dgram.Socket[] = []
  private readonly tcp: net.Server[] = []
  private readonly conns = new Set<net.Socket>()
  private boundPort = 0
  private boundGatewayPort: number | undefined
  private readonly log: Logger
  private udpOpen: boolean
  /** Every TCP client is unauthenticated for its whole life: counted until it closes. */
  private readonly guard: HandshakeGuard

  constructor(private readonly opts: DnsInterceptorOptions) {
    this.log = opts.log ?? silentLogger
    this.udpOpen = opts.holdUdp !== true
    this.guard = new HandshakeGuard({
      log: this.log,
      tag: 'dns',
      total: opts.maxTcpConnections ?? HANDSHAKE_LIMITS.total,
      perSource: opts.maxTcpPerSource ?? HANDSHAKE_LIMITS.perSource,
      reserve: opts.reserve,
    })
  }

  /** The loopback port (0 before start). */
  get port(): number {
    return this.boundPort
  }

  /** The port on every address (gateway mode), once started. */
  get gatewayPort(): number | undefined {
    return this.boundGatewayPort
  }

  /** Answer UDP queries (true) or drop them unanswered (false); see holdUdp. */
  answerUdp(on: boolean): void {
    this.udpOpen = on
  }

  /**
   * Binds the loopback addresses on one port (and in gateway mode the wildcard addresses on
   * another); rejects PORT_IN_USE / LISTEN. Resolves with the loopback port.
   */
  async start(): Promise<number> {
    const v6 = this.opts.ipv6
    try {
      this.boundPort = await this.bindAll(['127.0.0.1', ...(v6 ? ['::1'] : [])], this.opts.port)
      if (this.opts.gatewayPort !== undefined) {
        this.boundGatewayPort = await this.bindAll(['0.0.0.0', ...(v6 ? ['::'] : [])], this.opts.gatewayPort)
      }
      return this.boundPort
    } catch (e) {
      this.closeAll()
      throw e
    }
  }

  /** UDP and TCP on every host, one port for all; resolves with it. */
  private async bindAll(hosts: readonly string[], wanted: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const [udpBefore, tcpBefore] = [this.udp.length, this.tcp.length]
      let port = wanted
      try {
        for (const host of hosts) {
          if (this.opts.udp !== false) port = (await this.bindUdp(host, port)).address().port
          port = await this.listenTcp(host, port)
        }
        return port
      } catch (e) {
        for (const u of this.udp.splice(udpBefore)) u.close()
        for (const s of this.tcp.splice(tcpBefore)) s.close()
        // Port 0: the first socket got a free UDP port that may be taken for TCP or on ::1.
        if (wanted !== 0 || attempt >= 8) throw e
      }
    }
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy()
    const closing = this.tcp.map((s) => new Promise<void>((r) => s.close(() => r())))
    this.closeAll()
    await Promise.all(closing)
  }

  private closeAll(): void {
    for (const u of this.udp.splice(0)) u.close()
    for (const s of this.tcp.splice(0)) s.close()
  }

  private bindUdp(host: string, port: number): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const v6 = host.includes(':')
      // A large receive buffer absorbs bursts (dnsperf, a browser's prefetch); the kernel caps it.
      const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, recvBufferSize: 4 << 20 })
      s.once('error', (err: NodeJS.ErrnoException) => {
        s.close()
        reject(listenError(err, host, port))
      })
      s.bind({ address: host, port, exclusive: true }, () => {
        s.removeAllListeners('error')
        s.on('error', (err) => this.log.debug('dns', `udp ${host}: ${err.message}`))
        s.on('message', (msg, rinfo) => this.onUdp(s, msg, rinfo))
        this.udp.push(s)
        resolve(s)
      })
    })
  }

  private onUdp(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (!this.udpOpen) return
    this.opts.handler.handle(msg, 'udp', { address: rinfo.address, port: rinfo.port }).then(
      (answer) => {
        if (!answer) return
        try {
          s.send(answer, rinfo.port, rinfo.address, (err) => {
            if (err) this.log.debug('dns', `udp reply to ${formatHostPort(rinfo.address, rinfo.port)}: ${err.message}`)
          })
        } catch {
          // Socket closed by stop() while the query was in flight.
        }
      },
      () => {},
    )
  }

  private listenTcp(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const family = host.includes(':') ? 6 : 4
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.onTcp(sock, family))
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, host, port)))
      server.listen({ host, port, ipv6Only: host.includes(':'), exclusive: true }, () => {
        server.removeAllListeners('error')
        server.on('error', (err) => this.log.debug('dns', `tcp ${host}: ${err.message}`))
        this.tcp.push(server)
        resolve((server.address() as net.AddressInfo).port)
      })
    })
  }

  private onTcp(sock: net.Socket, family: 4 | 6): void {
    sock.on('error', (err) => this.log.debug('dns', `tcp ${formatHostPort(sock.remoteAddress ?? '?', sock.remotePort ?? 0)}: ${err.message}`))
    // Not redirected by our rules: reset before it counts against any limit.
    if (this.opts.isRedirected && !this.redirected(sock, family)) {
      this.log.verbose('dns', `rejecting ${formatHostPort(sock.remoteAddress ?? '?', sock.remotePort ?? 0)}: connected to the DNS interceptor directly, not redirected`)
      resetSocket(sock)
      return
    }
    if (!this.guard.admit(sock, 'dns tcp')) {
      resetSocket(sock)
      return
    }
    const max = this.opts.maxInFlightPerConnection ?? 64
    const idleMs = this.opts.tcpIdleMs ?? 10_000
    const client = { address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0 }
    const decoder = new FrameDecoder()
    const backlog: Buffer[] = []
    let inFlight = 0
    let ended = false
    // Idle = nothing in flight. From then the next query must be complete within idleMs: an
    // inactivity timer would be reset by a client trickling a frame one byte at a time, forever.
    let idleTimer: NodeJS.Timeout | undefined
    const becameIdle = (): void => {
      clearTimeout(idleTimer)
      idleTimer = setTimeout(() => sock.destroy(), idleMs)
    }
    becameIdle()
    this.conns.add(sock)
    sock.on('close', () => {
      clearTimeout(idleTimer)
      this.conns.delete(sock)
    })

    const maybeEnd = (): void => {
      // Client half-closed: answer what it asked, then close our side.
      if (ended && inFlight === 0 && backlog.length === 0) sock.end()
    }
    const settled = (): void => {
      inFlight--
      if (inFlight === 0 && backlog.length === 0) becameIdle()
    }
    const run = (query: Buffer): void => {
      inFlight++
      this.opts.handler.handle(query, 'tcp', client).then(
        (answer) => {
          if (answer && !sock.destroyed && sock.writable && answer.length <= 65535) sock.write(frame(answer))
          settled()
          while (inFlight < max && backlog.length > 0) run(backlog.shift()!)
          if (inFlight < max && sock.isPaused() && !ended) sock.resume()
          maybeEnd()
        },
        settled,
      )
    }
    sock.on('data', (chunk: Buffer) => {
      const { frames, error } = decoder.push(chunk)
      // A complete query: the handler's own timeouts bound it, no idle deadline meanwhile.
      if (frames.length > 0) clearTimeout(idleTimer)
      for (const f of frames) {
        if (inFlight < max) run(f)
        else backlog.push(f)
      }
      // Too many outstanding: stop reading, TCP flow control slows the client down.
      if (inFlight >= max) sock.pause()
      if (error) {
        this.log.debug('dns', `tcp ${formatHostPort(client.address, client.port)}: oversized frame, closing`)
        sock.destroy()
      }
    })
    sock.on('end', () => {
      ended = true
      maybeEnd()
    })
  }

  private redirected(sock: net.Socket, family: 4 | 6): boolean {
    try {
      return this.opts.isRedirected!(sock, family)
    } catch {
      return false // no original destination at all: not redirected
    }
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): TunnelError {
  const where = formatHostPort(host, port)
  if (err.code === 'EADDRINUSE') {
    return new TunnelError('PORT_IN_USE', `dns: listen ${where}: port already in use`, {
      hint: 'choose another DNS port, or let subnet-tunnel pick a free one',
      cause: err,
    })
  }
  return new TunnelError('LISTEN', `dns: listen ${where}: ${err.message}`, {
    hint: host.includes(':') ? 'IPv6 unavailable: capture only IPv4 nameservers' : undefined,
    cause: err,
  })
}
