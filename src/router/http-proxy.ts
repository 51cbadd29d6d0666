import { createHash, timingSafeEqual } from 'node:crypto'
import type net from 'node:net'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from './access'
import { ConnTracker } from './conn-tracker'
import { HandshakeGuard } from './handshake-guard'
import { HttpProxySession, closeGracefully } from './http-proxy-session'
import { buildSimpleResponse } from './http-proxy-wire'
import { AccessGate, TcpFrontEnd } from './proxy-common'
import type { Dialer } from './types'

export interface HttpProxyOptions {
  /** Address to bind (default 127.0.0.1). */
  readonly host?: string
  /** Port; 0 picks a free one. */
  readonly port: number
  readonly dialer: Dialer
  /** Who may connect (--allow); others get 403 and are logged. */
  readonly access: AccessPolicy
  readonly log: Logger
  readonly tracker?: ConnTracker
  /** Basic credentials (--proxy-auth); clients without them get 407. */
  readonly auth?: { readonly username: string; readonly password: string }
  /** The first request head must be complete within this of the accept (default 10 s). */
  readonly handshakeTimeoutMs?: number
  /** A kept-alive connection's next request head must be complete within this (default 15 s). */
  readonly idleTimeoutMs?: number
  /** Caps on clients waiting for a request head, shared with the other proxies (default: this proxy's own). */
  readonly guard?: HandshakeGuard
}

/**
 * Clients send their request head as soon as they connect: 10 s covers a slow link and bounds
 * how long a silent or trickling client holds a descriptor.
 */
export const HTTP_HEAD_MS = 10_000
/**
 * An idle kept-alive connection holds a descriptor too, so it waits in the guard like a new
 * one. 15 s keeps a browsing session's connections warm between clicks; clients reopen a
 * closed idle connection by themselves (RFC 9112 §9.3.1), so a shorter wait costs a round trip.
 */
export const HTTP_KEEPALIVE_MS = 15_000

/**
 * HTTP proxy front-end (`--http-proxy`): CONNECT tunnels and plain absolute-URI requests with
 * client keep-alive, for phones and tools that only speak HTTP proxies. Names in URLs are
 * passed to the dialer as-is, so they resolve on the remote side. Failures become 502/504 with
 * a readable text body; malformed input gets 400 and never affects other clients.
 */
export class HttpProxy extends TcpFrontEnd {
  readonly tracker: ConnTracker
  private readonly gate: AccessGate
  private readonly guard: HandshakeGuard
  private readonly checkAuth: ((u: string, p: string) => boolean) | undefined

  constructor(private readonly opts: HttpProxyOptions) {
    super({ host: opts.host, port: opts.port, flag: '--http-proxy', log: opts.log })
    this.tracker = opts.tracker ?? new ConnTracker()
    this.gate = new AccessGate(opts.access, opts.log, 'http-proxy')
    this.guard = opts.guard ?? new HandshakeGuard({ log: opts.log })
    const auth = opts.auth
    if (auth) {
      const user = digest(auth.username)
      const pass = digest(auth.password)
      // Fixed-size digests compared in constant time: no length or prefix leaks via timing.
      this.checkAuth = (u, p) => {
        const a = timingSafeEqual(digest(u), user)
        const b = timingSafeEqual(digest(p), pass)
        return a && b
      }
    }
  }

  /** See TcpFrontEnd.handleSocket. */
  handleSocket(socket: net.Socket): void {
    this.track(socket)
    socket.on('error', () => {})
    socket.setNoDelay(true)
    if (!this.gate.admit(socket.remoteAddress)) {
      socket.write(buildSimpleResponse(403, 'Forbidden', 'subnet-tunnel: this address may not use the proxy (see --allow)\n'))
      closeGracefully(socket, this.guard)
      return
    }
    const session = new HttpProxySession(socket, {
      dialer: this.opts.dialer,
      tracker: this.tracker,
      log: this.opts.log,
      checkAuth: this.checkAuth,
      guard: this.guard,
      firstHeadMs: this.opts.handshakeTimeoutMs ?? HTTP_HEAD_MS,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? HTTP_KEEPALIVE_MS,
    })
    void session.run()
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
