import { createHash, timingSafeEqual } from 'node:crypto'
import type net from 'node:net'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from './access'
import { ConnTracker } from './conn-tracker'
import { HandshakeGuard } from './handshake-guard'
import { AccessGate, type ProxyFailure, peerOf, proxyFailure, TcpFrontEnd } from './proxy-common'
import { type RelayContext, relay } from './relay'
import {
  Cmd,
  Method,
  Rep,
  type RepCode,
  type SocksRequest,
  buildMethodSelection,
  buildReply,
  buildUserPassReply,
  parseGreeting,
  parseRequest,
  parseUserPass,
} from './socks5-wire'
import type { Dialer } from './types'
import { resetSocket } from './socket-reset'

export interface Socks5ServerOptions {
  /** Address to bind (default 127.0.0.1). */
  readonly host?: string
  /** Port; 0 picks a free one. */
  readonly port: number
  readonly dialer: Dialer
  /** Who may connect (--allow); others are disconnected and logged. */
  readonly access: AccessPolicy
  readonly log: Logger
  readonly tracker?: ConnTracker
  /** RFC 1929 credentials (--proxy-auth). Without them only "no authentication" is offered. */
  readonly auth?: { readonly username: string; readonly password: string }
  /** Greeting + auth + request must complete within this of the accept, however the bytes trickle in (default 10 s). */
  readonly handshakeTimeoutMs?: number
  /** Caps on clients still in their handshake, shared with the other proxies (default: this proxy's own). */
  readonly guard?: HandshakeGuard
}

/**
 * A real client sends greeting, credentials and request within a few round trips; 10 s covers
 * a slow link and a loaded machine, and bounds how long a silent or trickling client holds a
 * descriptor (with the guard's caps: how many it can hold).
 */
export const SOCKS_HANDSHAKE_MS = 10_000

/** REP code a client sees for each dial failure, so it can say "connection refused" etc. */
const REP_FOR: Record<ProxyFailure, RepCode> = {
  refused: Rep.CONNECTION_REFUSED,
  'host-unreachable': Rep.HOST_UNREACHABLE,
  'network-unreachable': Rep.NETWORK_UNREACHABLE,
  prohibited: Rep.NOT_ALLOWED,
  timeout: Rep.TTL_EXPIRED,
  general: Rep.GENERAL_FAILURE,
}

/**
 * SOCKS5 proxy front-end (`-D`), CONNECT only. Domain names are passed to the dialer as they
 * came, so the SSH server resolves them on the remote side (what clients call socks5h).
 * A bad or abandoned handshake only closes that client; nothing throws past the socket.
 */
export class Socks5Server extends TcpFrontEnd {
  readonly tracker: ConnTracker
  private readonly gate: AccessGate
  private readonly guard: HandshakeGuard
  private readonly secret: { user: Buffer; pass: Buffer } | undefined
  private readonly relay: RelayContext

  constructor(private readonly opts: Socks5ServerOptions) {
    super({ host: opts.host, port: opts.port, flag: '-D', log: opts.log })
    this.tracker = opts.tracker ?? new ConnTracker()
    this.relay = { dialer: opts.dialer, tracker: this.tracker, log: opts.log }
    this.gate = new AccessGate(opts.access, opts.log, 'socks5')
    this.guard = opts.guard ?? new HandshakeGuard({ log: opts.log })
    this.secret = opts.auth && { user: digest(Buffer.from(opts.auth.username)), pass: digest(Buffer.from(opts.auth.password)) }
  }

  /** See TcpFrontEnd.handleSocket. */
  handleSocket(socket: net.Socket): void {
    const { log } = this.opts
    this.track(socket)
    socket.on('error', () => {}) // a reset during the handshake just ends it; 'close' cleans up
    if (!this.gate.admit(socket.remoteAddress)) {
      socket.destroy()
      return
    }
    const src = peerOf(socket)
    const deadlineMs = this.opts.handshakeTimeoutMs ?? SOCKS_HANDSHAKE_MS
    const admission = this.guard.admit(socket, 'socks5', {
      ms: deadlineMs,
      onExpire: () => {
        log.verbose('route', `socks5: ${src}: handshake not complete within ${deadlineMs} ms, closing`)
        socket.destroy()
      },
    })
    if (!admission) {
      // Nothing was read yet, so no SOCKS reply fits; a reset frees the descriptor at once.
      resetSocket(socket)
      return
    }
    socket.setNoDelay(true)

    let buf: Buffer = Buffer.alloc(0)
    let stage: 'greeting' | 'auth' | 'request' = 'greeting'
    const detach = (): void => {
      socket.off('data', onData)
      socket.off('end', onEnd)
    }
    const reject = (why: string, reply?: Buffer): void => {
      detach()
      log.verbose('route', `socks5: ${src}: ${why}`)
      closeAfter(socket, reply)
    }
    const step = (): void => {
      for (;;) {
        if (stage === 'greeting') {
          const r = parseGreeting(buf)
          if (r.status === 'more') return
          if (r.status === 'bad') return reject(r.reason)
          const want = this.secret ? Method.USERPASS : Method.NONE
          if (!r.value.methods.includes(want)) {
            return reject(`client offers no acceptable method (${this.secret ? 'username/password required' : 'no-auth'})`, buildMethodSelection(Method.NO_ACCEPTABLE))
          }
          socket.write(buildMethodSelection(want))
          buf = buf.subarray(r.consumed)
          stage = this.secret ? 'auth' : 'request'
        } else if (stage === 'auth') {
          const r = parseUserPass(buf)
          if (r.status === 'more') return
          if (r.status === 'bad') return reject(r.reason)
          if (!this.checkCredentials(r.value.username, r.value.password)) {
            // Never log the password; the user name helps to spot a misconfigured client.
            log.warn('route', `socks5: ${src}: authentication failed for user "${printable(r.value.username)}"`)
            return reject('authentication failed', buildUserPassReply(false))
          }
          socket.write(buildUserPassReply(true))
          buf = buf.subarray(r.consumed)
          stage = 'request'
        } else {
          const r = parseRequest(buf)
          if (r.status === 'more') return
          if (r.status === 'bad') return reject(r.reason, r.reply === undefined ? undefined : buildReply(r.reply))
          if (r.value.cmd !== Cmd.CONNECT) {
            return reject(`command ${r.value.cmd} not supported (CONNECT only)`, buildReply(Rep.COMMAND_NOT_SUPPORTED))
          }
          detach()
          admission.done()
          // Bytes pipelined behind the request (early data) go back into the socket so that
          // pipeBoth sees them first; pausing keeps later ones in the kernel until the dial ends.
          socket.pause()
          const rest = buf.subarray(r.consumed)
          if (rest.length > 0) socket.unshift(rest)
          this.connect(socket, r.value)
          return
        }
      }
    }
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      step()
    }
    const onEnd = (): void => reject('client closed during the handshake')
    socket.on('data', onData)
    socket.on('end', onEnd)
  }

  private checkCredentials(user: Buffer, pass: Buffer): boolean {
    const s = this.secret!
    // Compare fixed-size digests so neither content nor length leaks through timing.
    const u = timingSafeEqual(digest(user), s.user)
    const p = timingSafeEqual(digest(pass), s.pass)
    return u && p
  }

  private connect(socket: net.Socket, req: SocksRequest): void {
    const src = { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 }
    const dst = { host: req.host, port: req.port }
    void relay(socket, { frontEnd: 'socks5', label: 'socks5', src, dst }, this.relay, () => socket.write(buildReply(Rep.SUCCEEDED))).then((r) => {
      if (!r.ok && !r.clientGone) closeAfter(socket, buildReply(REP_FOR[proxyFailure(r.error)]))
    })
  }
}

/**
 * Sends a final reply and closes gracefully (FIN, so the client reads the reply before EOF;
 * an immediate destroy could turn into a RST that discards it). Remaining input is drained,
 * and a short timer destroys the socket if the client never closes its side.
 */
function closeAfter(socket: net.Socket, reply: Buffer | undefined): void {
  if (socket.destroyed) return
  socket.setTimeout(2_000, () => socket.destroy())
  socket.on('end', () => socket.destroy())
  socket.resume()
  if (reply) socket.end(reply)
  else socket.end()
}

function digest(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest()
}

function printable(b: Buffer): string {
  return b.toString('utf8').replace(/[^\x20-\x7e\u00a0-\uffff]/g, '?').slice(0, 64)
}
