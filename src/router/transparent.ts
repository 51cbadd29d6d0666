import net from 'node:net'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { ConnTracker } from './conn-tracker'
import { pipeBoth } from './pipe'
import type { RouteTable } from './route-table'
import { resetSocket } from './socket-reset'
import type { ConnMeta, Destination, Dialer } from './types'

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

  constructor(private readonly opts: TransparentListenerOptions) {
    this.tracker = opts.tracker ?? new ConnTracker()
  }

  get port(): number {
    return this.boundPort
  }

  /** Binds IPv4 (and ::1 on the same port). Rejects PORT_IN_USE / LISTEN with a hint. */
  async start(): Promise<number> {
    const host = this.opts.host ?? '127.0.0.1'
    // With port 0 the kernel picks the IPv4 port; ::1 may already have that port taken by
    // someone else, so retry a few times with a fresh pick instead of failing the user.
    for (let attempt = 0; ; attempt++) {
      const v4 = await this.listenOne(host, this.opts.port)
      const port = (v4.address() as net.AddressInfo).port
      if (!this.opts.ipv6) {
        this.servers.push(v4)
        this.boundPort = port
        return port
      }
      try {
        const v6 = await this.listenOne(this.opts.host6 ?? '::1', port)
        this.servers.push(v4, v6)
        this.boundPort = port
        return port
      } catch (e) {
        v4.close()
        if (this.opts.port !== 0 || attempt >= 5) throw e
      }
    }
  }

  private listenOne(host: string, port: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a client's FIN must not close our side; pipeBoth forwards it as SSH EOF.
      const family = host.includes(':') ? 6 : 4
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.accept(s, family))
      server.once('error', (err: NodeJS.ErrnoException) => {
        const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
        if (err.code === 'EADDRINUSE') {
          reject(
            new TunnelError('PORT_IN_USE', `listen ${where}: port already in use`, {
              hint: 'choose another with --listen PORT, or omit --listen to pick a free port',
              cause: err,
            }),
          )
        } else {
          reject(
            new TunnelError('LISTEN', `listen ${where}: ${err.message}`, {
              hint: host === '::1' ? 'IPv6 loopback unavailable: route only IPv4 subnets' : undefined,
              cause: err,
            }),
          )
        }
      })
      server.listen({ host, port, ipv6Only: host.includes(':'), backlog: 4096 }, () => {
        server.removeAllListeners('error')
        server.on('error', (err) => this.opts.log.error('route', `listener: ${err.message}`))
        resolve(server)
      })
    })
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
      log.verbose('route', `rejecting ${socket.remoteAddress}:${socket.remotePort}: ${errorMessage(e)}`)
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
    const { log, routes, dialer } = this.opts
    // With conntrack loaded, SO_ORIGINAL_DST of a connection that was NOT redirected returns
    // the socket's own address: someone connected to the listener directly (possible from the
    // LAN in gateway mode). Dialling that would loop; refuse it.
    if (dst.port === this.boundPort && (isLoopback(dst.host) || sameAddress(dst.host, socket.localAddress))) {
      log.verbose('route', `rejecting a direct connection to the listener from ${socket.remoteAddress}`)
      resetSocket(socket)
      return
    }
    if (routes.decide(dst.host) !== 'tunnel') {
      log.verbose('route', `${fmt(dst)}: not in the tunnelled subnets, resetting`)
      resetSocket(socket)
      return
    }
    const meta: ConnMeta = {
      id: this.tracker.nextId(),
      frontEnd: 'transparent',
      srcAddress: socket.remoteAddress ?? '127.0.0.1',
      srcPort: socket.remotePort ?? 0,
    }
    const conn = this.tracker.open(meta, dst)
    // Per-connection lines are built only when they will be written (-v): at thousands of
    // connections per second the strings alone show up in profiles.
    const verbose = log.enabled('verbose')
    // Until the channel opens the socket stays paused (no 'data' listener yet), so early
    // client bytes wait in the kernel buffer and nothing is lost.
    socket.on('error', () => {}) // errors before piping: handled by the close below
    dialer.dial(dst, meta).then(
      (remote) => {
        if (socket.destroyed) {
          remote.destroy()
          this.tracker.close(conn, 'client went away while connecting')
          return
        }
        if (verbose) log.verbose('route', `#${meta.id} ${meta.srcAddress}:${meta.srcPort} → ${fmt(dst)} open`)
        pipeBoth(socket, remote, conn).then((r) => {
          this.tracker.close(conn, r.error?.message)
          if (verbose) {
            log.verbose(
              'route',
              `#${meta.id} → ${fmt(dst)} closed (${r.bytesUp} B up, ${r.bytesDown} B down)` +
                (r.error ? `: ${r.error.message}` : ''),
            )
          }
        })
      },
      (err) => {
        this.tracker.close(conn, errorMessage(err))
        log.warn('route', `#${meta.id} → ${fmt(dst)}: ${errorMessage(err)}`)
        resetSocket(socket)
      },
    )
  }

  /** Resets every open connection (the transport under them died); keeps listening. */
  resetAll(): void {
    for (const s of this.sockets) resetSocket(s)
  }

  /** Stops accepting and resets every connection still open. */
  async stop(): Promise<void> {
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    for (const s of this.sockets) resetSocket(s)
    await Promise.all(closed)
    this.servers.length = 0
  }
}

function fmt(d: Destination): string {
  return d.host.includes(':') ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`
}

function sameAddress(a: string, b: string | undefined): boolean {
  if (b === undefined) return false
  const strip = (s: string): string => s.replace(/^::ffff:/i, '').toLowerCase()
  return strip(a) === strip(b)
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host.startsWith('::ffff:127.')
}
