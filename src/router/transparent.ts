import type net from 'node:net'
import { formatHostPort } from '../config/host-port'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { ConnTracker } from './conn-tracker'
import { DialError } from './dial-error'
import { closeAll, listenAll } from './listen'
import { type RelayContext, relay } from './relay'
import type { RouteTable } from './route-table'
import { resetSocket } from './socket-reset'
import type { Destination, Dialer } from './types'

/**
 * Looks up where a redirected connection was originally going (SO_ORIGINAL_DST on Linux,
 * synchronous; DIOCNATLOOK through the helper on macOS, asynchronous).
 * `listenerFamily` is the family of the listener that accepted it (IPv6 listeners are
 * ipv6Only, so never see IPv4-mapped peers): the lookup need not ask the socket.
 */
export type OriginalDstLookup = (socket: net.Socket, listenerFamily: 4 | 6) => Destination | Promise<Destination>

export interface TransparentListenerOptions {
  /** IPv4 address to bind (default 127.0.0.1). */
  readonly host?: string
  /** Port; 0 picks a free one. The IPv6 listener (::1) always uses the same port. */
  readonly port: number
  /** Also listen on IPv6 (needed when IPv6 subnets are routed). */
  readonly ipv6: boolean
  /** IPv6 address to bind (default ::1; :: in gateway mode, where the kernel redirects to the
   * incoming interface's address rather than to loopback). */
  readonly host6?: string
  readonly routes: RouteTable
  readonly dialer: Dialer
  readonly originalDst: OriginalDstLookup
  readonly log: Logger
  readonly tracker?: ConnTracker
  /**
   * How many connections fit in this process's open-files limit (limit minus descriptors
   * already open), when known. Past it the kernel and libuv accept and close new connections
   * silently (Node never sees EMFILE), so we warn while approaching it.
   */
  readonly connectionBudget?: number
}

/**
 * The local endpoint the kernel redirects captured connections to. For each accepted socket it
 * recovers the original destination, asks the route table, opens a channel through the dialer
 * and pipes. A failed connection is logged and reset; it never affects the listener.
 */
export class TransparentListener {
  readonly tracker: ConnTracker
  private readonly servers: net.Server[] = []
  private readonly sockets = new Set<net.Socket>()
  private boundPort = 0

  private readonly relay: RelayContext

  constructor(private readonly opts: TransparentListenerOptions) {
    this.tracker = opts.tracker ?? new ConnTracker()
    this.relay = { dialer: opts.dialer, tracker: this.tracker, log: opts.log, routes: opts.routes }
  }

  get port(): number {
    return this.boundPort
  }

  /** Binds IPv4 (and ::1 on the same port). Rejects PORT_IN_USE / LISTEN with a hint. */
  async start(): Promise<number> {
    const host6 = this.opts.host6 ?? '::1'
    const servers = await listenAll({
      hosts: [this.opts.host ?? '127.0.0.1', ...(this.opts.ipv6 ? [host6] : [])],
      port: this.opts.port,
      backlog: 4096,
      log: this.opts.log,
      name: 'transparent',
      onSocket: (s, family) => this.accept(s, family),
      fail: (err, where) =>
        err.code === 'EADDRINUSE'
          ? new TunnelError('PORT_IN_USE', `listen ${where}: port already in use`, {
              hint: 'choose another with --listen PORT, or omit --listen to pick a free port',
              cause: err,
            })
          : new TunnelError('LISTEN', `listen ${where}: ${err.message}`, {
              hint: where.startsWith('[::1]') ? 'IPv6 loopback unavailable: route only IPv4 subnets' : undefined,
              cause: err,
            }),
    })
    this.servers.push(...servers)
    this.boundPort = (servers[0]!.address() as net.AddressInfo).port
    return this.boundPort
  }

  private accept(socket: net.Socket, family: 4 | 6): void {
    const { log } = this.opts
    // (TCP_NODELAY is already set: the server's noDelay option applies it on accept.)
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    const budget = this.opts.connectionBudget
    if (budget !== undefined && this.sockets.size >= budget * 0.9) {
      // (rate-limited by the CLI's logger: a few lines per 10 s, the rest at -v)
      log.warn('route', `${this.sockets.size} connections open, near the open-files limit: new ones will be refused; raise it (ulimit -n)`)
    }
    const notRedirected = (e: unknown): void => {
      // Someone connected to our port directly, not through a redirect.
      log.verbose('route', `rejecting ${formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0)}: ${errorMessage(e)}`)
      resetSocket(socket)
    }
    let found: Destination | Promise<Destination>
    try {
      found = this.opts.originalDst(socket, family)
    } catch (e) {
      notRedirected(e)
      return
    }
    // pf (macOS) asks the helper: the socket stays paused meanwhile, so nothing is lost.
    if (found instanceof Promise) {
      found.then((dst) => {
        if (!socket.destroyed) this.route(socket, dst)
      }, notRedirected)
      return
    }
    this.route(socket, found)
  }

  private route(socket: net.Socket, dst: Destination): void {
    const { log } = this.opts
    // With conntrack loaded, SO_ORIGINAL_DST of a connection that was NOT redirected returns
    // the socket's own address: someone connected to the listener directly (possible from the
    // LAN in gateway mode). Dialling that would loop; refuse it.
    if (dst.port === this.boundPort && (isLoopback(dst.host) || sameAddress(dst.host, socket.localAddress))) {
      log.verbose('route', `rejecting a direct connection to the listener from ${socket.remoteAddress}`)
      resetSocket(socket)
      return
    }
    // Until the channel opens the socket stays paused (no 'data' listener yet), so early
    // client bytes wait in the kernel buffer and nothing is lost.
    socket.on('error', () => {}) // errors before piping: handled by the close below
    const req = {
      frontEnd: 'transparent' as const,
      src: { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 },
      dst,
      routedOnly: true,
    }
    void relay(socket, req, this.relay).then((r) => {
      if (r.ok) return
      if (r.error instanceof DialError && r.error.reason === 'not-routed') {
        log.verbose('route', `${formatHostPort(dst.host, dst.port)}: not in the tunnelled subnets, resetting`)
      }
      resetSocket(socket)
    })
  }

  /** Stops accepting and resets every connection still open. */
  async stop(): Promise<void> {
    const closed = closeAll(this.servers.splice(0))
    for (const s of this.sockets) resetSocket(s)
    await closed
  }
}

function sameAddress(a: string, b: string | undefined): boolean {
  if (b === undefined) return false
  const strip = (s: string): string => s.replace(/^::ffff:/i, '').toLowerCase()
  return strip(a) === strip(b)
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host.startsWith('::ffff:127.')
}
