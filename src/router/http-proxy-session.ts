import type net from 'node:net'
import type { Writable } from 'node:stream'
import { formatHostPort } from '../config/host-port'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { ByteReader, writeAll } from './byte-reader'
import type { ConnTracker } from './conn-tracker'
import type { Admission, HandshakeGuard } from './handshake-guard'
import {
  ChunkedScanner,
  type Framing,
  type HeadResult,
  type ProxyTarget,
  type RequestHead,
  type ResponseHead,
  buildClientResponse,
  buildOriginRequest,
  buildSimpleResponse,
  headerTokens,
  headerValues,
  parseBasicAuth,
  parseRequestHead,
  parseResponseHead,
  parseTarget,
  requestFraming,
  responseFraming,
  wantsUpgrade,
} from './http-proxy-wire'
import { type ProxyFailure, peerOf, proxyFailure } from './proxy-common'
import { type Opened, type RelayContext, finishConnection, openFor, pipeOpened } from './relay'
import { resetSocket } from './socket-reset'
import type { Destination, Dialer } from './types'

/** What a session needs from its HttpProxy. */
export interface HttpSessionDeps {
  readonly dialer: Dialer
  readonly tracker: ConnTracker
  readonly log: Logger
  /** Checks Basic credentials; undefined = no authentication required. */
  readonly checkAuth?: (username: string, password: string) => boolean
  /** Counts the connection while it waits for a request head, and closes it at the deadline. */
  readonly guard: HandshakeGuard
  /** The first request head must be complete within this of the accept. */
  readonly firstHeadMs: number
  /** On a kept-alive connection, the next request head must be complete within this. */
  readonly idleTimeoutMs: number
}

type Outcome = 'keep' | 'close' | 'handed-over'

const FAILURE_TEXT: Record<ProxyFailure, string> = {
  refused: 'connection refused',
  'host-unreachable': 'host unreachable',
  'network-unreachable': 'network unreachable',
  prohibited: 'not allowed by the SSH server',
  timeout: 'timed out',
  general: 'failed',
}

/**
 * One client connection of the HTTP proxy: reads requests one after another (keep-alive) and
 * serves each over a fresh upstream stream from the dialer.
 *
 * Keep-alive is client-side only: every request gets its own upstream (sent with Connection:
 * close), and the response's framing (Content-Length, chunked, or close-delimited) tells when
 * it is complete, so the next request — possibly to another host — can follow on the same
 * client connection. Reusing upstreams would save a channel open per request but needs
 * retry-on-stale logic that a non-idempotent request cannot have; one stream per request also
 * gives the tracker and audit log one record per request.
 */
export class HttpProxySession {
  private readonly src: string
  private readonly relay: RelayContext

  constructor(private readonly socket: net.Socket, private readonly deps: HttpSessionDeps) {
    this.src = peerOf(socket)
    this.relay = { dialer: deps.dialer, tracker: deps.tracker, log: deps.log }
  }

  /** Serves the connection until it closes. Never rejects. */
  async run(): Promise<void> {
    const { socket } = this
    socket.on('error', () => {}) // resets show up as a failed read/write below
    const reader = new ByteReader(socket)
    let outcome: Outcome = 'close'
    try {
      for (let first = true; ; first = false) {
        const admission = this.awaitingHead(first)
        if (!admission) break
        const got = await readHead(reader, parseRequestHead, () => {})
        admission.done()
        if (got === null) break
        if (got.status === 'bad') {
          this.deps.log.verbose('route', `http: ${this.src}: ${got.reason}`)
          await this.send(buildSimpleResponse(got.code, got.code === 431 ? 'Request Header Fields Too Large' : 'Bad Request', `${got.reason}\n`))
          break
        }
        outcome = await this.serve(reader, got.head)
        if (outcome !== 'keep') break
      }
    } catch (e) {
      this.deps.log.debug('route', `http: ${this.src}: ${errorMessage(e)}`)
      resetSocket(socket)
    }
    if (outcome !== 'handed-over') {
      reader.detach()
      closeGracefully(socket, this.deps.guard)
    }
  }

  /**
   * Enters the guard for the wait for a request head — the first (the handshake: request and
   * credentials) or the next on a kept-alive connection, which holds a descriptor just the same.
   * The deadline is absolute: bytes trickling in do not extend it. Refused (over a cap, or
   * descriptors short): a new client gets 503, a kept-alive one is just closed, both at once.
   */
  private awaitingHead(first: boolean): Admission | undefined {
    const { socket } = this
    const ms = first ? this.deps.firstHeadMs : this.deps.idleTimeoutMs
    const admission = this.deps.guard.admit(socket, 'http-proxy', {
      ms,
      onExpire: () => {
        this.deps.log.debug('route', `http: ${this.src}: no complete request head within ${ms} ms, closing`)
        socket.destroy()
      },
    })
    if (admission) return admission
    if (first) socket.end(buildSimpleResponse(503, 'Service Unavailable', 'subnet-tunnel: too many connections waiting, try again later\n'))
    // The response (if any) is in the kernel's send buffer already; destroy frees the descriptor now.
    socket.destroy()
    return undefined
  }

  private async serve(reader: ByteReader, head: RequestHead): Promise<Outcome> {
    if (!this.authorized(head)) {
      return this.fail(407, 'Proxy Authentication Required', 'proxy authentication required\n', ['Proxy-Authenticate: Basic realm="subnet-tunnel"'])
    }
    const t = parseTarget(head.method, head.target)
    if ('error' in t) return this.fail(400, 'Bad Request', `${t.error}\n`)
    if (t.kind === 'connect') return this.connect(reader, t)
    return this.forward(reader, head, t)
  }

  private authorized(head: RequestHead): boolean {
    const check = this.deps.checkAuth
    if (!check) return true
    const value = headerValues(head.headers, 'proxy-authorization')[0]
    const creds = parseBasicAuth(value)
    if (creds && check(creds.username, creds.password)) return true
    // Browsers first try without credentials, so a missing header is routine; a wrong one is not.
    if (value === undefined) this.deps.log.verbose('route', `http: ${this.src}: no proxy credentials, asking for them`)
    else this.deps.log.warn('route', `http: ${this.src}: proxy authentication failed${creds ? ` for user ${JSON.stringify(creds.username.slice(0, 64))}` : ''}`)
    return false
  }

  private async fail(status: number, reason: string, body: string, extra: string[] = []): Promise<Outcome> {
    await this.send(buildSimpleResponse(status, reason, body, extra))
    return 'close'
  }

  /** Dials (relay.ts); on failure answers 502/504 with a readable body and returns undefined. */
  private async dial(dst: Destination, keepAlive: boolean): Promise<Opened | undefined> {
    const src = { address: this.socket.remoteAddress ?? '127.0.0.1', port: this.socket.remotePort ?? 0 }
    const got = await openFor(this.socket, { frontEnd: 'http', label: 'http', src, dst }, this.relay)
    if (got.ok) return got.opened
    if (got.clientGone) return undefined
    const kind = proxyFailure(got.error)
    const [status, reason] = kind === 'timeout' ? [504, 'Gateway Timeout'] : [502, 'Bad Gateway']
    const body = `${status} ${reason}\n\nsubnet-tunnel could not connect to ${formatHostPort(dst.host, dst.port)}: ${FAILURE_TEXT[kind]}\n${errorMessage(got.error)}\n`
    await this.send(buildSimpleResponse(status, reason, body, [], keepAlive))
    return undefined
  }

  /** CONNECT: a raw tunnel. Bytes the client sent after the head (e.g. a TLS hello) are kept. */
  private async connect(reader: ByteReader, t: Extract<ProxyTarget, { kind: 'connect' }>): Promise<Outcome> {
    reader.detach()
    const o = await this.dial({ host: t.host, port: t.port }, false)
    if (!o) return 'close'
    this.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    void pipeOpened(this.socket, o, this.relay)
    return 'handed-over'
  }

  /** A plain request: forward head and body, relay the response, and say whether to keep going. */
  private async forward(reader: ByteReader, head: RequestHead, t: Extract<ProxyTarget, { kind: 'forward' }>): Promise<Outcome> {
    const framing = requestFraming(head.headers)
    if ('error' in framing) return this.fail(400, 'Bad Request', `${framing.error}\n`)
    const clientKeep =
      head.minor === 1 && !headerTokens(head.headers, 'connection').includes('close') && !headerTokens(head.headers, 'proxy-connection').includes('close')
    const dst = { host: t.host, port: t.port }
    // Without a request body nothing is left unread on a failure, so the connection can stay.
    const o = await this.dial(dst, clientKeep && framing.kind === 'none')
    if (!o) return clientKeep && framing.kind === 'none' && !this.socket.destroyed ? 'keep' : 'close'
    const upstream = o.remote
    upstream.on('error', () => {})
    // A client that goes away (or stop()) must release the upstream even while we wait for it.
    const onClientClose = (): void => void upstream.destroy()
    this.socket.once('close', onClientClose)
    const up = new ByteReader(upstream)
    const c = o.conn
    let bodyDone = framing.kind === 'none'
    let started = false
    let error: string | undefined
    let outcome: Outcome = 'close'
    try {
      const reqHead = buildOriginRequest(head, t)
      await writeAll(upstream, reqHead)
      c.bytesUp += reqHead.length
      if (!bodyDone) {
        // The body streams concurrently with the response: a server may answer early (413, 401).
        copyBody(reader, upstream, framing, (n) => (c.bytesUp += n)).then(
          () => (bodyDone = true),
          () => upstream.destroy(), // the client broke off mid-body: abandon the request
        )
      }
      for (;;) {
        const got = await readHead(up, parseResponseHead, (n) => (c.bytesDown += n))
        if (got === null) throw new Error('the server closed the connection without a response')
        if (got.status === 'bad') throw new Error(`malformed response from the server: ${got.reason}`)
        const rh: ResponseHead = got.head
        if (rh.status === 101 && wantsUpgrade(head)) {
          started = true
          await writeAll(this.socket, buildClientResponse(rh, false))
          up.detach()
          reader.detach()
          void pipeOpened(this.socket, o, this.relay)
          return (outcome = 'handed-over')
        }
        if (rh.status < 200) {
          // Interim responses (100 Continue) are only for HTTP/1.1 clients (RFC 9110 §15.2).
          if (head.minor === 1) await writeAll(this.socket, buildClientResponse(rh, true))
          continue
        }
        const rf = responseFraming(head.method, rh.status, rh.headers)
        if ('error' in rf) throw new Error(`malformed response from the server: ${rf.error}`)
        const keep = clientKeep && rf.kind !== 'close'
        started = true
        await writeAll(this.socket, buildClientResponse(rh, keep))
        await copyBody(up, this.socket, rf, (n) => (c.bytesDown += n))
        // A response that completes before the request body leaves unread bytes: close.
        outcome = keep && bodyDone ? 'keep' : 'close'
        return outcome
      }
    } catch (e) {
      error = errorMessage(e)
      if (!started && !this.socket.destroyed) {
        const body = `502 Bad Gateway\n\nsubnet-tunnel: ${formatHostPort(dst.host, dst.port)}: ${error}\n`
        await this.send(buildSimpleResponse(502, 'Bad Gateway', body))
      } else {
        // Part of the response went out: only a reset tells the client it is incomplete.
        resetSocket(this.socket)
      }
      return 'close'
    } finally {
      this.socket.off('close', onClientClose)
      if (outcome !== 'handed-over') {
        up.detach()
        upstream.destroy()
        finishConnection(o, this.relay, error)
      }
    }
  }

  private async send(b: Buffer): Promise<void> {
    await writeAll(this.socket, b).catch(() => {})
  }
}

/** Reads one message head, returning leftover bytes to the reader; null on EOF before any byte. */
async function readHead<T>(reader: ByteReader, parse: (b: Buffer) => HeadResult<T>, count: (n: number) => void): Promise<Exclude<HeadResult<T>, { status: 'more' }> | null> {
  let buf: Buffer = Buffer.alloc(0)
  for (;;) {
    const chunk = await reader.read().catch(() => null)
    if (chunk === null) {
      if (buf.toString('latin1').trim() === '') return null
      return { status: 'bad', reason: 'connection closed in the middle of a message head', code: 400 }
    }
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    const r = parse(buf)
    if (r.status === 'more') continue
    if (r.status === 'done') {
      reader.unshift(buf.subarray(r.consumed))
      count(r.consumed)
    }
    return r
  }
}

/** Copies exactly one body (as framed) from reader to dest; the rest stays in the reader. */
async function copyBody(reader: ByteReader, dest: Writable, framing: Framing, count: (n: number) => void): Promise<void> {
  if (framing.kind === 'none') return
  let remaining = framing.kind === 'length' ? framing.length : Infinity
  const scanner = framing.kind === 'chunked' ? new ChunkedScanner() : undefined
  while (remaining > 0 && !scanner?.done) {
    const chunk = await reader.read()
    if (chunk === null) {
      if (framing.kind === 'close') return
      throw new Error('body cut short')
    }
    let n = chunk.length
    if (scanner) {
      n = scanner.feed(chunk)
      if (scanner.error) throw new Error(`bad chunked body: ${scanner.error}`)
    } else if (n > remaining) n = remaining
    if (n < chunk.length) reader.unshift(chunk.subarray(n))
    remaining -= n
    count(n)
    await writeAll(dest, n < chunk.length ? chunk.subarray(0, n) : chunk)
  }
}

/**
 * Ends the client connection after what was written, then waits up to 2 s for its FIN (so the
 * client reads the last response before a reset could discard it). The wait is in the guard: a
 * flood of clients that never close cannot hold descriptors uncounted; over a cap the socket
 * is destroyed at once.
 */
export function closeGracefully(socket: net.Socket, guard: HandshakeGuard): void {
  if (socket.destroyed) return
  if (!guard.admit(socket, 'http-proxy', { ms: 2_000, onExpire: () => socket.destroy() })) {
    socket.destroy()
    return
  }
  socket.on('end', () => socket.destroy())
  socket.resume()
  socket.end()
}
