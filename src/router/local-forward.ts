import net from 'node:net'
import { type ForwardSpec, ALL_ADDRESSES, LOOPBACK, formatForward, isNonLoopbackBind } from '../config/forward-spec'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { AccessPolicy } from './access'
import { ConnTracker } from './conn-tracker'
import type { DescriptorReserve } from './descriptor-reserve'
import { HandshakeGuard } from './handshake-guard'
import { pipeBoth } from './pipe'
import { resetSocket } from './socket-reset'
import type { ConnMeta, Destination, Dialer } from './types'

export interface LocalForwardOptions {
  /** A parsed `-L` (kind 'local'). bindPort 0 picks a free port (tests; the parser refuses it). */
  readonly spec: ForwardSpec
  /** Opens the far end (the SSH dialer: host:hostPort is reached from the bastion). */
  readonly dialer: Dialer
  /** Who may connect (--allow). Default: loopback only. */
  readonly access?: AccessPolicy
  readonly tracker?: ConnTracker
  readonly log: Logger
  /** Clients from other hosts are reset while free descriptors are below this reserve. */
  readonly reserve?: DescriptorReserve
}

/** Loopback only: who may use the descriptor reserve through -L. */
const LOCAL = new AccessPolicy()

/**
 * `ssh -L`: a local listener whose every connection becomes one dial to spec.host:hostPort
 * through the shared dialer. A failed open resets that client and is logged; it never
 * affects the listener. Clients outside the access policy are refused before dialling.
 */
export class LocalForward {
  readonly tracker: ConnTracker
  private readonly access: AccessPolicy
  private readonly servers: net.Server[] = []
  private readonly sockets = new Set<net.Socket>()
  private readonly name: string
  private boundPort = 0
  /**
   * -L has no handshake (a client is dialled at once), so no deadline and no handshake cap:
   * only the reserve applies, and only to other hosts (an -L bound off loopback for --allow
   * networks), so a neighbour cannot take the descriptors the tunnel needs. Local clients are
   * treated like the transparent listener's.
   */
  private readonly reserveGate: HandshakeGuard | undefined

  constructor(private readonly opts: LocalForwardOptions) {
    if (opts.spec.kind !== 'local') throw new TunnelError('INTERNAL', `LocalForward given a ${opts.spec.kind} forward`)
    this.tracker = opts.tracker ?? new ConnTracker()
    this.access = opts.access ?? new AccessPolicy()
    this.name = formatForward(opts.spec)
    this.reserveGate = opts.reserve && new HandshakeGuard({ log: opts.log, perSource: Infinity, total: Infinity, reserve: opts.reserve })
  }

  /** The bound port (after start). */
  get port(): number {
    return this.boundPort
  }

  /**
   * Listens. `localhost` binds 127.0.0.1 and ::1 on one port as OpenSSH does (::1 is skipped
   * when the host has no IPv6); `*` binds every address (dual-stack ::, else 0.0.0.0).
   * Rejects PORT_IN_USE / LISTEN with a hint.
   */
  async start(): Promise<number> {
    const { spec, log } = this.opts
    if (spec.bindHost === LOOPBACK) await this.listenLoopback(spec.bindPort)
    else if (spec.bindHost === ALL_ADDRESSES) await this.listenAll(spec.bindPort)
    else this.servers.push(await this.listenOne(spec.bindHost, spec.bindPort))
    this.boundPort = (this.servers[0]!.address() as net.AddressInfo).port
    // The "reachable from other hosts" warning is the CLI's (one wording for every front-end).
    if (isNonLoopbackBind(spec)) log.verbose('route', `${this.name}: allowed clients: ${this.access.describe()}`)
    log.verbose('route', `${this.name}: listening on port ${this.boundPort}`)
    return this.boundPort
  }

  private async listenLoopback(port: number): Promise<void> {
    // Port 0: the kernel picks the IPv4 port and ::1 may have it taken already; retry a few
    // times rather than fail (as TransparentListener does).
    for (let attempt = 0; ; attempt++) {
      const v4 = await this.listenOne('127.0.0.1', port)
      const picked = (v4.address() as net.AddressInfo).port
      try {
        this.servers.push(v4, await this.listenOne('::1', picked))
        return
      } catch (e) {
        const code = ((e as TunnelError).cause as NodeJS.ErrnoException | undefined)?.code
        if (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') {
          this.servers.push(v4) // no IPv6 loopback here: IPv4 alone is what OpenSSH ends up with too
          return
        }
        v4.close()
        if (port !== 0 || attempt >= 5) throw e
      }
    }
  }

  private async listenAll(port: number): Promise<void> {
    try {
      // '::' without ipv6Only accepts IPv4 too (as ::ffff:a.b.c.d), like OpenSSH's two sockets.
      this.servers.push(await this.listenOne('::', port, false))
    } catch (e) {
      const code = ((e as TunnelError).cause as NodeJS.ErrnoException | undefined)?.code
      if (code !== 'EADDRNOTAVAIL' && code !== 'EAFNOSUPPORT') throw e
      this.servers.push(await this.listenOne('0.0.0.0', port))
    }
  }

  private listenOne(host: string, port: number, ipv6Only = host.includes(':')): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a client's FIN must not close our side; pipeBoth forwards it as SSH EOF.
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.handleSocket(s))
      server.once('error', (err: NodeJS.ErrnoException) => {
        const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
        if (err.code === 'EADDRINUSE') {
          reject(new TunnelError('PORT_IN_USE', `${this.name}: listen ${where}: port already in use`, {
            hint: 'another program (or another forward) uses this local port; choose another',
            cause: err,
          }))
        } else {
          reject(new TunnelError('LISTEN', `${this.name}: listen ${where}: ${err.message}`, {
            hint: err.code === 'EACCES' ? 'ports below 1024 need root; choose a port above 1023' : 'check the bind address: it must be an address of this machine',
            cause: err,
          }))
        }
      })
      server.listen({ host, port, ipv6Only, backlog: 511 }, () => {
        server.removeAllListeners('error')
        server.on('error', (err) => this.opts.log.error('route', `${this.name}: listener: ${err.message}`))
        resolve(server)
      })
    })
  }

  /**
   * Serves one accepted client socket. Public so tests can present a client address of their
   * choice (as TcpFrontEnd.handleSocket).
   */
  handleSocket(socket: net.Socket): void {
    const { log, dialer, spec } = this.opts
    const src = `${socket.remoteAddress}:${socket.remotePort}`
    socket.on('error', () => {}) // errors before piping end in the close below
    if (!this.access.allows(socket.remoteAddress)) {
      log.warn('route', `${this.name}: refused client ${src} (not in ${this.access.describe()})`)
      resetSocket(socket)
      return
    }
    if (this.reserveGate && !LOCAL.allows(socket.remoteAddress)) {
      const admitted = this.reserveGate.admit(socket, this.name)
      if (!admitted) {
        resetSocket(socket)
        return
      }
      admitted.done()
    }
    socket.setNoDelay(true)
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    const dst: Destination = { host: spec.host, port: spec.hostPort }
    const dstText = dst.host.includes(':') ? `[${dst.host}]:${dst.port}` : `${dst.host}:${dst.port}`
    const meta: ConnMeta = {
      id: this.tracker.nextId(),
      frontEnd: 'forward',
      srcAddress: socket.remoteAddress ?? '127.0.0.1',
      srcPort: socket.remotePort ?? 0,
    }
    const conn = this.tracker.open(meta, dst)
    // The socket stays paused until piped: early client bytes wait in the kernel buffer.
    dialer.dial(dst, meta).then(
      (remote) => {
        if (socket.destroyed) {
          remote.destroy()
          this.tracker.close(conn, 'client went away while connecting')
          return
        }
        log.verbose('route', `#${meta.id} forward ${src} → ${dstText} open`)
        void pipeBoth(socket, remote, conn).then((r) => {
          this.tracker.close(conn, r.error?.message)
          log.verbose('route', `#${meta.id} forward ${src} → ${dstText} closed (${r.bytesUp} B up, ${r.bytesDown} B down)` +
            (r.error ? `: ${r.error.message}` : ''))
        })
      },
      (err) => {
        this.tracker.close(conn, errorMessage(err))
        log.warn('route', `#${meta.id} forward ${src} → ${dstText}: ${errorMessage(err)}`)
        resetSocket(socket)
      },
    )
  }

  /** Stops listening and resets every connection still open. */
  async stop(): Promise<void> {
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    for (const s of this.sockets) resetSocket(s)
    await Promise.all(closed)
    this.servers.length = 0
  }
}
