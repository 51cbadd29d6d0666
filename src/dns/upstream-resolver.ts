import dgram from 'node:dgram'
import net from 'node:net'
import ipaddr from 'ipaddr.js'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { silentLogger } from '../observe/logger'
import { resetSocket } from '../router/socket-reset'
import type { Destination } from '../router/types'
import { FrameDecoder, frame } from './framing'
import { HEADER_SIZE, Rcode, failureReply, readHeader, readQuestion, sameQuestion, withId } from './wire'
import type { ResolveResult, Resolver, Transport } from './types'
import { formatHostPort } from '../config/host-port'

export interface UpstreamResolverOptions {
  /** The machine's original resolvers (IP literals, usually port 53), tried in order. */
  readonly servers: readonly Destination[]
  /** Local source port for UDP and the TCP fallback; 0 (default) lets the OS pick one. */
  readonly port?: number
  /** How long one attempt may take (default 2000 ms). */
  readonly timeoutMs?: number
  /** Attempts per query, each to the next server (default: max(2, number of servers)). */
  readonly attempts?: number
  /** Retry truncated answers over TCP for TCP clients (default true). */
  readonly tcpFallback?: boolean
  readonly log?: Logger
}

export interface UpstreamResolverStats {
  readonly queries: number
  readonly answers: number
  readonly timeouts: number
  readonly failures: number
  readonly tcpFallbacks: number
  readonly tcpFallbackFailures: number
}

interface Job {
  readonly query: Buffer
  readonly origId: number
  readonly via: Transport
  readonly resolve: (r: ResolveResult) => void
  attempt: number
  wireId: number
  server: number
  timer?: NodeJS.Timeout
}

/**
 * Forwards queries unchanged (only the id is remapped) to the machine's original resolvers:
 * the names split DNS keeps local. It sends from ONE fixed local port, which the kernel rules
 * exempt from the DNS capture (DnsCapture.exemptSourcePorts) — otherwise our own queries to
 * the original nameserver would be redirected back to us in a loop.
 *
 * TCP fallback: when a UDP answer is truncated and the client came over TCP, the query is
 * repeated over TCP from the same local port number (TCP ports are a separate namespace, and
 * libuv binds with SO_REUSEADDR). The connection is closed with RST so no TIME_WAIT blocks the
 * next one, and fallbacks to one server are serialised (one 4-tuple). If the port is taken
 * for TCP or the server refuses, the client gets the truncated answer.
 */
export class UpstreamResolver implements Resolver {
  private readonly sockets = new Map<4 | 6, dgram.Socket>()
  private readonly pending = new Map<number, Job>()
  private readonly servers: { dst: Destination; family: 4 | 6; norm: string; text: string }[]
  private readonly timeoutMs: number
  private readonly attempts: number
  private readonly log: Logger
  private readonly tcpChains = new Map<number, Promise<unknown>>()
  private boundPort = 0
  private closed = false
  private counters = { queries: 0, answers: 0, timeouts: 0, failures: 0, tcpFallbacks: 0, tcpFallbackFailures: 0 }

  constructor(private readonly opts: UpstreamResolverOptions) {
    this.servers = opts.servers
      .filter((d) => net.isIP(d.host) !== 0)
      .map((dst) => ({
        dst,
        family: net.isIP(dst.host) === 6 ? (6 as const) : (4 as const),
        norm: normalize(dst.host),
        text: formatHostPort(dst.host, dst.port),
      }))
    this.timeoutMs = opts.timeoutMs ?? 2000
    this.attempts = opts.attempts ?? Math.max(2, this.servers.length)
    this.log = opts.log ?? silentLogger
  }

  /** The fixed local port, once started. */
  get port(): number {
    return this.boundPort
  }

  /** Source ports the kernel must not capture (UDP and TCP): just our one port. */
  exemptPorts(): number[] {
    return this.boundPort ? [this.boundPort] : []
  }

  /** Binds one UDP socket per needed family on the same port. Resolves with the port. */
  async start(): Promise<number> {
    const families = [...new Set(this.servers.map((s) => s.family))].sort()
    if (families.length === 0) families.push(4)
    for (let attempt = 0; ; attempt++) {
      let port = this.opts.port ?? 0
      const bound: dgram.Socket[] = []
      try {
        for (const family of families) {
          const s = await bindUdp(family, port)
          bound.push(s)
          port = s.address().port
          this.sockets.set(family, s)
        }
        this.boundPort = port
        for (const [family, s] of this.sockets) {
          s.on('message', (msg, rinfo) => this.onMessage(family, msg, rinfo))
          s.on('error', (err) => this.log.debug('dns', `upstream socket: ${err.message}`))
        }
        return port
      } catch (e) {
        for (const s of bound) s.close()
        this.sockets.clear()
        // With port 0, v4 got a free port that may be taken on v6: pick again.
        if ((this.opts.port ?? 0) !== 0 || attempt >= 5) throw e
      }
    }
  }

  async query(msg: Buffer, via: Transport = 'udp'): Promise<Buffer> {
    return (await this.resolve(msg, via)).answer
  }

  resolve(query: Buffer, via: Transport): Promise<ResolveResult> {
    const first = this.servers[0]?.text ?? 'none'
    if (readQuestion(query) === undefined) return Promise.resolve({ answer: failureReply(query, Rcode.FORMERR), server: first, ok: false })
    if (this.closed || this.servers.length === 0 || this.sockets.size === 0) {
      return Promise.resolve({ answer: failureReply(query, Rcode.SERVFAIL), server: first, ok: false })
    }
    this.counters.queries++
    return new Promise((resolve) => {
      const job: Job = { query, origId: query.readUInt16BE(0), via, resolve, attempt: 0, wireId: 0, server: 0 }
      this.send(job)
    })
  }

  stats(): UpstreamResolverStats {
    return { ...this.counters }
  }

  close(): void {
    this.closed = true
    for (const job of [...this.pending.values()]) this.finish(job, failureReply(job.query, Rcode.SERVFAIL), false)
    for (const s of this.sockets.values()) s.close()
    this.sockets.clear()
  }

  private send(job: Job): void {
    job.server = job.attempt % this.servers.length
    const srv = this.servers[job.server]
    const sock = this.sockets.get(srv.family)
    job.wireId = this.allocId()
    this.pending.set(job.wireId, job)
    job.timer = setTimeout(() => this.onTimeout(job), this.timeoutMs)
    job.timer.unref()
    if (!sock) return // no socket for this family: let the timeout move on to the next server
    try {
      sock.send(withId(job.query, job.wireId), srv.dst.port, srv.dst.host, (err) => {
        if (err) this.log.debug('dns', `upstream ${srv.text}: ${err.message}`)
      })
    } catch (e) {
      this.log.debug('dns', `upstream ${srv.text}: ${errorMessage(e)}`) // the timeout moves on
    }
  }

  private allocId(): number {
    for (;;) {
      const id = (Math.random() * 0x10000) | 0
      if (!this.pending.has(id)) return id
    }
  }

  private onTimeout(job: Job): void {
    if (this.pending.get(job.wireId) !== job) return
    this.pending.delete(job.wireId)
    this.counters.timeouts++
    this.log.verbose('dns', `no answer from ${this.servers[job.server].text} within ${this.timeoutMs} ms`)
    if (++job.attempt < this.attempts && !this.closed) return this.send(job)
    this.counters.failures++
    this.finish(job, failureReply(job.query, Rcode.SERVFAIL), false)
  }

  private onMessage(family: 4 | 6, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < HEADER_SIZE || (msg[2] & 0x80) === 0) return // too short, or not a response
    const job = this.pending.get(msg.readUInt16BE(0))
    if (!job) return
    const srv = this.servers[job.server]
    // Accept only the server we asked and the question we asked (RFC 5452 spoofing guards).
    if (srv.family !== family || rinfo.port !== srv.dst.port || normalize(rinfo.address) !== srv.norm) return
    if (!sameQuestion(job.query, msg)) return
    this.pending.delete(job.wireId)
    if (job.timer) clearTimeout(job.timer)
    this.counters.answers++
    const answer = withId(msg, job.origId)
    if (job.via === 'tcp' && readHeader(msg)?.tc && this.opts.tcpFallback !== false) {
      this.counters.tcpFallbacks++
      this.viaTcp(job, answer)
      return
    }
    this.finish(job, answer, true)
  }

  /** Serialised per server: concurrent connections from one local port to one server would clash. */
  private viaTcp(job: Job, truncated: Buffer): void {
    const prev = this.tcpChains.get(job.server) ?? Promise.resolve()
    const next = prev.then(() =>
      tcpExchange(this.servers[job.server].dst, this.boundPort, job.query, this.timeoutMs).then(
        (full) => this.finish(job, full, true),
        (err) => {
          this.counters.tcpFallbackFailures++
          this.log.debug('dns', `TCP retry to ${this.servers[job.server].text} failed (${errorMessage(err)}): returning the truncated answer`)
          this.finish(job, truncated, true)
        },
      ),
    )
    this.tcpChains.set(job.server, next)
    void next.then(() => {
      if (this.tcpChains.get(job.server) === next) this.tcpChains.delete(job.server)
    })
  }

  private finish(job: Job, answer: Buffer, ok: boolean): void {
    if (job.timer) clearTimeout(job.timer)
    this.pending.delete(job.wireId)
    job.resolve({ answer, server: this.servers[job.server]?.text ?? 'none', ok })
  }
}

/** One query over a fresh TCP connection from localPort; rejects on any failure. */
function tcpExchange(dst: Destination, localPort: number, query: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: dst.host, port: dst.port, localPort })
    const decoder = new FrameDecoder()
    const timer = setTimeout(() => done(new Error('timed out')), timeoutMs)
    let settled = false
    const done = (err: Error | undefined, answer?: Buffer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      // RST instead of FIN: no TIME_WAIT on our fixed port, so the next fallback can connect.
      resetSocket(sock)
      if (err) reject(err)
      else resolve(answer!)
    }
    sock.on('connect', () => sock.write(frame(query)))
    sock.on('data', (chunk: Buffer) => {
      const { frames, error } = decoder.push(chunk)
      if (error) return done(new Error('oversized frame'))
      const f = frames.find((m) => m.length >= HEADER_SIZE && m.readUInt16BE(0) === query.readUInt16BE(0))
      if (f) done(undefined, Buffer.from(f))
    })
    sock.on('error', (err) => done(err))
    sock.on('close', () => done(new Error('connection closed without an answer')))
  })
}

function bindUdp(family: 4 | 6, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 })
    s.once('error', (err) => {
      s.close()
      reject(err)
    })
    s.bind({ port, address: family === 6 ? '::' : '0.0.0.0', exclusive: true }, () => {
      s.removeAllListeners('error')
      resolve(s)
    })
  })
}

function normalize(addr: string): string {
  try {
    const a = ipaddr.process(addr.replace(/%.*$/, ''))
    return a.toNormalizedString()
  } catch {
    return addr
  }
}
