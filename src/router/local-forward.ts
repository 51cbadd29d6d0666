import type net from 'node:net'
import { type ForwardSpec, ALL_ADDRESSES, LOOPBACK, formatForward, isNonLoopbackBind } from '../config/forward-spec'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import { AccessPolicy } from './access'
import { ConnTracker } from './conn-tracker'
import type { DescriptorReserve } from './descriptor-reserve'
import { HandshakeGuard } from './handshake-guard'
import { closeAll, listenAll, listenAnyAddress } from './listen'
import { peerOf } from './proxy-common'
import { type RelayContext, relay } from './relay'
import { resetSocket } from './socket-reset'
import type { Dialer } from './types'

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
  private readonly relay: RelayContext

  constructor(private readonly opts: LocalForwardOptions) {
    if (opts.spec.kind !== 'local') throw new TunnelError('INTERNAL', `LocalForward given a ${opts.spec.kind} forward`)
    this.tracker = opts.tracker ?? new ConnTracker()
    this.access = opts.access ?? new AccessPolicy()
    this.name = formatForward(opts.spec)
    this.reserveGate = opts.reserve && new HandshakeGuard({ log: opts.log, perSource: Infinity, total: Infinity, reserve: opts.reserve })
    this.relay = { dialer: opts.dialer, tracker: this.tracker, log: opts.log }
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
    const o = {
      port: spec.bindPort,
      backlog: 511,
      log,
      name: this.name,
      onSocket: (s: net.Socket) => this.handleSocket(s),
      fail: (err: NodeJS.ErrnoException, where: string) =>
        err.code === 'EADDRINUSE'
          ? new TunnelError('PORT_IN_USE', `${this.name}: listen ${where}: port already in use`, {
              hint: 'another program (or another forward) uses this local port; choose another',
              cause: err,
            })
          : new TunnelError('LISTEN', `${this.name}: listen ${where}: ${err.message}`, {
              hint: err.code === 'EACCES' ? 'ports below 1024 need root; choose a port above 1023' : 'check the bind address: it must be an address of this machine',
              cause: err,
            }),
    }
    // No IPv6 loopback here: IPv4 alone is what OpenSSH ends up with too.
    if (spec.bindHost === LOOPBACK) this.servers.push(...(await listenAll({ ...o, hosts: ['127.0.0.1', '::1'], laterOptional: true })))
    else if (spec.bindHost === ALL_ADDRESSES) this.servers.push(...(await listenAnyAddress(o)))
    else this.servers.push(...(await listenAll({ ...o, hosts: [spec.bindHost] })))
    this.boundPort = (this.servers[0]!.address() as net.AddressInfo).port
    // The "reachable from other hosts" warning is the CLI's (one wording for every front-end).
    if (isNonLoopbackBind(spec)) log.verbose('route', `${this.name}: allowed clients: ${this.access.describe()}`)
    log.verbose('route', `${this.name}: listening on port ${this.boundPort}`)
    return this.boundPort
  }

  /**
   * Serves one accepted client socket. Public so tests can present a client address of their
   * choice (as TcpFrontEnd.handleSocket).
   */
  handleSocket(socket: net.Socket): void {
    const { log, spec } = this.opts
    const src = peerOf(socket)
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
    // The socket stays paused until piped: early client bytes wait in the kernel buffer.
    const req = {
      frontEnd: 'forward' as const,
      label: 'forward',
      src: { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 },
      dst: { host: spec.host, port: spec.hostPort },
    }
    void relay(socket, req, this.relay).then((r) => {
      if (!r.ok) resetSocket(socket)
    })
  }

  /** Stops listening and resets every connection still open. */
  async stop(): Promise<void> {
    const closed = closeAll(this.servers.splice(0))
    for (const s of this.sockets) resetSocket(s)
    await closed
  }
}
