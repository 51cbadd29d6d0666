import net from 'node:net'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { Duplex } from 'node:stream'
import type { AccessPolicy } from './access'
import { type PipeResult, pipeBoth } from './pipe'
import { resetSocket } from './socket-reset'
import type { Destination } from './types'

/**
 * Shared plumbing of the explicit proxies (SOCKS5, HTTP): binding, the --allow gate, and how a
 * failed dial is told to the client.
 */

/** Why a dial failed, in the terms proxy protocols can express. */
export type DialFailure = 'refused' | 'host-unreachable' | 'network-unreachable' | 'prohibited' | 'timeout' | 'general'

/**
 * Classifies an error from Dialer.dial. Duck-typed on `code`/`reason` so the router does not
 * import the ssh layer: a CHANNEL_OPEN TunnelError carries the RFC 4254 reason mapped by
 * src/ssh/errors-map.ts; errno codes cover dialers that use plain sockets.
 */
export function classifyDialError(e: unknown): DialFailure {
  const err = e as { code?: unknown; reason?: unknown; message?: unknown }
  if (err?.code === 'CHANNEL_OPEN') {
    switch (err.reason) {
      case 'refused':
        return 'refused'
      case 'prohibited':
        return 'prohibited'
      case 'timeout':
        return 'timeout'
      case 'unreachable':
        // OpenSSH passes its connect() strerror on: "Network is unreachable" vs "No route to host".
        return /network/i.test(String(err.message)) ? 'network-unreachable' : 'host-unreachable'
    }
    return 'general'
  }
  switch (err?.code) {
    case 'ECONNREFUSED':
      return 'refused'
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
      return 'host-unreachable'
    case 'ENETUNREACH':
      return 'network-unreachable'
    case 'ETIMEDOUT':
      return 'timeout'
  }
  return 'general'
}

/** "host:port", IPv6 in brackets. */
export function formatDest(d: Destination): string {
  return d.host.includes(':') ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`
}

/** "addr:port" of a socket's peer, IPv6 in brackets. */
export function formatPeer(address: string | undefined, port: number | undefined): string {
  return formatDest({ host: address ?? '?', port: port ?? 0 })
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

/**
 * Binds a TCP listener; maps EADDRINUSE to PORT_IN_USE and anything else to LISTEN, with a
 * hint naming the option (`flag`) that chose the address.
 */
export function listenTcp(host: string, port: number, flag: string, onSocket: (s: net.Socket) => void, log: Logger): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a client's FIN must not close our side; pipeBoth forwards it as SSH EOF.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, onSocket)
    const where = formatDest({ host, port })
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new TunnelError('PORT_IN_USE', `${flag} ${where}: port already in use`, { hint: `choose another port for ${flag}`, cause: err }))
      } else {
        reject(new TunnelError('LISTEN', `${flag} ${where}: ${errorMessage(err)}`, { hint: `check the address given to ${flag}`, cause: err }))
      }
    })
    server.listen({ host, port, backlog: 1024 }, () => {
      server.removeAllListeners('error')
      server.on('error', (err) => log.error('route', `${flag} listener: ${err.message}`))
      resolve(server)
    })
  })
}

/** Closes a listener and resets the sockets it accepted that are still open. */
export async function closeListener(server: net.Server | undefined, sockets: Set<net.Socket>): Promise<void> {
  const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
  for (const s of sockets) resetSocket(s)
  sockets.clear()
  await closed
}

/**
 * A front-end that listens on one TCP port (SOCKS5, HTTP proxy): start() binds and resolves
 * with the bound port, stop() stops accepting and resets every client still open. Subclasses
 * serve each accepted socket in handleSocket() and call track() on it first.
 */
export abstract class TcpFrontEnd {
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private boundPort = 0

  protected constructor(private readonly listen: { host?: string; port: number; flag: string; log: Logger }) {}

  get port(): number {
    return this.boundPort
  }

  /** Binds the listener; rejects PORT_IN_USE / LISTEN. Resolves with the bound port. */
  async start(): Promise<number> {
    const { host, port, flag, log } = this.listen
    this.server = await listenTcp(host ?? '127.0.0.1', port, flag, (s) => this.handleSocket(s), log)
    this.boundPort = (this.server.address() as net.AddressInfo).port
    return this.boundPort
  }

  /** Stops accepting and resets every connection still open. */
  async stop(): Promise<void> {
    await closeListener(this.server, this.sockets)
    this.server = undefined
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

/**
 * pipeBoth, plus the case where the client's FIN already arrived while we were reading its
 * handshake or waiting for the dial: a paused net.Socket still emits 'end' once its buffer is
 * empty (net calls read(0) on EOF), so pipeBoth would never see it and the remote would never
 * get EOF. Forward it here instead.
 */
export function pipeClient(client: net.Socket, remote: Duplex, counters: { bytesUp: number; bytesDown: number }): Promise<PipeResult> {
  const done = pipeBoth(client, remote, counters)
  if (client.readableEnded) remote.end()
  return done
}
