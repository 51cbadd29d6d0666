import { createHash, timingSafeEqual } from 'node:crypto'
import type net from 'node:net'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from './access'
import { ConnTracker } from './conn-tracker'
import { HttpProxySession } from './http-proxy-session'
import { buildSimpleResponse } from './http-proxy-wire'
import { AccessGate, closeListener, listenTcp } from './proxy-common'
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
  /** How long an idle keep-alive client connection stays open (default 60 s). */
  readonly idleTimeoutMs?: number
}

/**
 * HTTP proxy front-end (`--http-proxy`): CONNECT tunnels and plain absolute-URI requests with
 * client keep-alive, for phones and tools that only speak HTTP proxies. Names in URLs are
 * passed to the dialer as-is, so they resolve on the remote side. Failures become 502/504 with
 * a readable text body; malformed input gets 400 and never affects other clients.
 */
export class HttpProxy {
  readonly tracker: ConnTracker
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private readonly gate: AccessGate
  private readonly checkAuth: ((u: string, p: string) => boolean) | undefined
  private boundPort = 0

  constructor(private readonly opts: HttpProxyOptions) {
    this.tracker = opts.tracker ?? new ConnTracker()
    this.gate = new AccessGate(opts.access, opts.log, 'http-proxy')
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

  get port(): number {
    return this.boundPort
  }

  /** Binds the listener; rejects PORT_IN_USE / LISTEN. Resolves with the bound port. */
  async start(): Promise<number> {
    this.server = await listenTcp(this.opts.host ?? '127.0.0.1', this.opts.port, '--http-proxy', (s) => this.handleSocket(s), this.opts.log)
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
  handleSocket(socket: net.Socket): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    if (!this.gate.admit(socket.remoteAddress)) {
      socket.end(buildSimpleResponse(403, 'Forbidden', 'subnet-tunnel: this address may not use the proxy (see --allow)\n'))
      socket.setTimeout(2_000, () => socket.destroy())
      socket.on('end', () => socket.destroy())
      socket.resume()
      return
    }
    const session = new HttpProxySession(socket, {
      dialer: this.opts.dialer,
      tracker: this.tracker,
      log: this.opts.log,
      checkAuth: this.checkAuth,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? 60_000,
    })
    void session.run()
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
