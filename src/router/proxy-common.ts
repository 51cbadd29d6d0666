import type net from 'node:net'
import { formatHostPort } from '../config/host-port'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from './access'
import { DialError } from './dial-error'
import { closeAll, listenAll } from './listen'
import { resetSocket } from './socket-reset'

/**
 * Shared plumbing of the explicit proxies (SOCKS5, HTTP): binding, the --allow gate, and the
 * answer a proxy protocol can give for a failed dial.
 */

/** Why a dial failed, in the terms proxy protocols can express (everything else: general). */
export type ProxyFailure = 'refused' | 'host-unreachable' | 'network-unreachable' | 'prohibited' | 'timeout' | 'general'

/** The proxy-protocol answer for what Dialer.dial rejected with. */
export function proxyFailure(e: unknown): ProxyFailure {
  if (!(e instanceof DialError)) return 'general'
  switch (e.reason) {
    case 'refused':
      return 'refused'
    case 'prohibited':
      return 'prohibited'
    case 'timeout':
      return 'timeout'
    case 'unreachable':
      return 'host-unreachable'
    case 'network-unreachable':
      return 'network-unreachable'
    default:
      return 'general'
  }
}

/**
 * The --allow gate with a warning at most once per client address per minute, so a scanner
 * hammering an exposed proxy cannot flood the log. The map is pruned as it grows, so it stays
 * bounded by the number of distinct addresses seen within one minute.
 */
export class AccessGate {
  private readonly lastWarned = new Map<string, number>()

  constructor(
    private readonly policy: AccessPolicy,
    private readonly log: Logger,
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the client may use the proxy; logs (rate-limited) when it may not. */
  admit(address: string | undefined): boolean {
    if (this.policy.allows(address)) return true
    const key = address ?? '?'
    const t = this.now()
    const last = this.lastWarned.get(key)
    if (last === undefined || t - last >= 60_000) {
      if (this.lastWarned.size >= 1024) {
        for (const [k, v] of this.lastWarned) if (t - v >= 60_000) this.lastWarned.delete(k)
      }
      this.lastWarned.set(key, t)
      this.log.warn('route', `${this.what}: refused client ${key}: not in --allow (${this.policy.describe()})`)
    }
    return false
  }
}

/** "addr:port" of a socket's peer, IPv6 in brackets ("?" for what the socket no longer knows). */
export function peerOf(socket: net.Socket): string {
  return formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0)
}

/**
 * A front-end that listens on one TCP port (SOCKS5, HTTP proxy): start() binds and resolves
 * with the bound port, stop() stops accepting and resets every client still open. Subclasses
 * serve each accepted socket in handleSocket() and call track() on it first.
 */
export abstract class TcpFrontEnd {
  private servers: net.Server[] = []
  private readonly sockets = new Set<net.Socket>()
  private boundPort = 0

  protected constructor(private readonly listen: { host?: string; port: number; flag: string; log: Logger }) {}

  get port(): number {
    return this.boundPort
  }

  /**
   * Binds the listener; maps EADDRINUSE to PORT_IN_USE and anything else to LISTEN, with a
   * hint naming the option (`flag`) that chose the address. Resolves with the bound port.
   */
  async start(): Promise<number> {
    const { host, port, flag, log } = this.listen
    this.servers = await listenAll({
      hosts: [host ?? '127.0.0.1'],
      port,
      // As net's default: a proxy bound to '::' serves IPv4 clients too.
      dualStack: true,
      backlog: 1024,
      log,
      name: flag,
      onSocket: (s) => this.handleSocket(s),
      fail: (err, where) =>
        err.code === 'EADDRINUSE'
          ? new TunnelError('PORT_IN_USE', `${flag} ${where}: port already in use`, { hint: `choose another port for ${flag}`, cause: err })
          : new TunnelError('LISTEN', `${flag} ${where}: ${errorMessage(err)}`, { hint: `check the address given to ${flag}`, cause: err }),
    })
    this.boundPort = (this.servers[0]!.address() as net.AddressInfo).port
    return this.boundPort
  }

  /** Stops accepting and resets every connection still open. */
  async stop(): Promise<void> {
    const closed = closeAll(this.servers.splice(0))
    for (const s of this.sockets) resetSocket(s)
    this.sockets.clear()
    await closed
  }

  /**
   * Serves one accepted client socket (created with allowHalfOpen). Public so a socket accepted
   * elsewhere can be handed over — and so tests can present a client address of their choice.
   */
  abstract handleSocket(socket: net.Socket): void

  /** Counts the socket as open until it closes: stop() resets it if it is still open then. */
  protected track(socket: net.Socket): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
  }
}
