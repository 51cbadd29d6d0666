import type { Duplex } from 'node:stream'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { silentLogger } from '../observe/logger'
import type { ConnMeta, Destination, Dialer } from '../router/types'
import { FrameDecoder, MAX_FRAME } from './framing'
import { HEADER_SIZE, Rcode, failureReply, readQuestion, sameQuestion, withId } from './wire'
import type { ResolveResult, Resolver } from './types'
import { formatHostPort } from '../config/host-port'

export interface TunnelResolverOptions {
  readonly dialer: Dialer
  /** Remote resolvers, tried in order: the next one is used after a failure. At least one. */
  readonly servers: readonly Destination[]
  /** Most channels used at once per resolver (default 8); a new one opens only when all are busy.
   * Several resolvers (dnsmasq among them) answer one query at a time per TCP connection, so
   * channels are also how queries run in parallel at the far end. */
  readonly poolSize?: number
  /** How long one attempt may take (default 3000 ms). */
  readonly timeoutMs?: number
  /** Attempts per query before answering SERVFAIL (default 2: one retry on another channel). */
  readonly attempts?: number
  /** An unused channel is closed after this long (default 30 s). */
  readonly idleMs?: number
  readonly log?: Logger
  /** Connection numbers for ConnMeta (shared with the router's tracker for log correlation). */
  readonly nextConnId?: () => number
}

export interface TunnelResolverStats {
  readonly queries: number
  readonly answers: number
  readonly timeouts: number
  /** Queries answered with our own SERVFAIL after every attempt failed. */
  readonly failures: number
  readonly retries: number
  readonly dials: number
  readonly dialFailures: number
  readonly channels: number
  readonly inFlight: number
}

interface Job {
  readonly query: Buffer
  readonly origId: number
  readonly resolve: (r: ResolveResult) => void
  failedAttempts: number
  sends: number
  channel?: Channel
  wireId: number
  timer?: NodeJS.Timeout
  done: boolean
}

/** One DNS-over-TCP stream inside one SSH channel, carrying many queries at once. */
class Channel {
  stream?: Duplex
  state: 'dialing' | 'open' | 'closed' = 'dialing'
  /** Queries written to this channel (retries included). */
  sent = 0
  /** No new queries: it timed out or its resolver is no longer the current one. */
  draining = false
  answered = 0
  readonly inflight = new Map<number, Job>()
  readonly queued: Buffer[] = []
  readonly decoder = new FrameDecoder(MAX_FRAME)
  idleTimer?: NodeJS.Timeout
  constructor(readonly server: number) {}

  /** A random id unused on this channel, so answers from different clients never collide. */
  allocId(): number {
    for (let i = 0; i < 32; i++) {
      const id = (Math.random() * 0x10000) | 0
      if (!this.inflight.has(id)) return id
    }
    for (let id = 0; id < 0x10000; id++) if (!this.inflight.has(id)) return id
    return 0 // 65,536 queries in flight on one channel: unreachable in practice
  }

  write(buf: Buffer): void {
    if (this.state === 'open' && this.stream) this.stream.write(buf)
    else this.queued.push(buf)
  }
}

/**
 * Resolves queries with the remote network's resolver: DNS over TCP (RFC 7766) inside SSH
 * direct-tcpip channels, pipelined — many outstanding queries per channel, each sent under a
 * fresh id unique on that channel and answered back under the client's id. Channels are
 * dialled lazily, so after an SSH reconnect the next query simply opens new ones.
 *
 * Failure handling: an attempt that times out marks its channel draining (it may be stalled)
 * and is retried on another one; a channel that errors or closes hands its queries to a retry;
 * with several resolvers the next one becomes current. When attempts run out the query gets
 * SERVFAIL, so resolve() always settles with an answer.
 */
export class TunnelResolver implements Resolver {
  private readonly channels = new Set<Channel>()
  private readonly poolSize: number
  private readonly timeoutMs: number
  private readonly attempts: number
  private readonly idleMs: number
  private readonly log: Logger
  private readonly nextConnId: () => number
  private current = 0
  private closed = false
  /**
   * Queries per connection each resolver accepts before it closes it, learned when it does
   * (dnsmasq: 100). We stop sending to a channel at that count and dial its successor ahead
   * of time, so no query is lost to the close and none waits for a new channel to open.
   */
  private readonly perChannelLimit = new Map<number, number>()
  private lastWarn = 0
  private counters = { queries: 0, answers: 0, timeouts: 0, failures: 0, retries: 0, dials: 0, dialFailures: 0 }

  constructor(private readonly opts: TunnelResolverOptions) {
    if (opts.servers.length === 0) throw new RangeError('TunnelResolver needs at least one server')
    this.poolSize = Math.max(1, opts.poolSize ?? 8)
    this.timeoutMs = opts.timeoutMs ?? 3000
    this.attempts = Math.max(1, opts.attempts ?? 2)
    this.idleMs = opts.idleMs ?? 30_000
    this.log = opts.log ?? silentLogger
    let n = 0
    this.nextConnId = opts.nextConnId ?? (() => ++n)
  }

  /** The resolver currently used, as "host:port". */
  get currentServer(): string {
    return fmt(this.opts.servers[this.current])
  }

  /** The answer for a query (SERVFAIL when the tunnel could not get one). Never rejects. */
  async query(msg: Buffer): Promise<Buffer> {
    return (await this.resolve(msg)).answer
  }

  resolve(msg: Buffer): Promise<ResolveResult> {
    const server = this.currentServer
    if (readQuestion(msg) === undefined || msg.length > MAX_FRAME) {
      return Promise.resolve({ answer: failureReply(msg, Rcode.FORMERR), server, ok: false })
    }
    if (this.closed) return Promise.resolve({ answer: failureReply(msg, Rcode.SERVFAIL), server, ok: false })
    this.counters.queries++
    return new Promise((resolve) => {
      const job: Job = { query: msg, origId: msg.readUInt16BE(0), resolve, failedAttempts: 0, sends: 0, wireId: 0, done: false }
      this.send(job)
    })
  }

  stats(): TunnelResolverStats {
    let inFlight = 0
    for (const ch of this.channels) inFlight += ch.inflight.size
    return { ...this.counters, channels: this.channels.size, inFlight }
  }

  /** Closes every channel; queries still in flight get SERVFAIL, later ones too. */
  close(): void {
    this.closed = true
    for (const ch of [...this.channels]) this.closeChannel(ch, 'resolver closed')
  }

  private send(job: Job, avoid?: Channel): void {
    job.sends++
    const ch = this.pick(avoid)
    const wireId = ch.allocId()
    job.channel = ch
    job.wireId = wireId
    ch.inflight.set(wireId, job)
    ch.sent++
    const limit = this.perChannelLimit.get(ch.server)
    if (limit !== undefined) {
      if (ch.sent >= limit) ch.draining = true
      // Dial the successor while this channel still has room, so the switch costs no round trip.
      if (ch.sent === Math.max(1, Math.floor(limit * 0.8)) && this.openCount() <= this.poolSize) this.dial()
    }
    if (ch.idleTimer) clearTimeout(ch.idleTimer)
    // Frame and remap in one copy: length prefix, then the query with the channel's id.
    const framed = Buffer.allocUnsafe(job.query.length + 2)
    framed.writeUInt16BE(job.query.length, 0)
    job.query.copy(framed, 2)
    framed.writeUInt16BE(wireId, 2)
    job.timer = setTimeout(() => this.onTimeout(job, ch), this.timeoutMs)
    job.timer.unref()
    ch.write(framed)
  }

  /**
   * The least busy usable channel, or a new one while the pool is not full. An open channel
   * beats one still dialling even when busier: a query on a dialling channel waits a full
   * round trip for the open, one on an open channel only for the answers ahead of it.
   */
  private pick(avoid?: Channel): Channel {
    let best: Channel | undefined
    let active = 0
    const better = (a: Channel, b: Channel): boolean =>
      a.state !== b.state ? a.state === 'open' : a.inflight.size < b.inflight.size
    for (const ch of this.channels) {
      if (ch.draining || ch.state === 'closed' || ch.server !== this.current) continue
      active++
      if (ch !== avoid && (!best || better(ch, best))) best = ch
    }
    if (best && (best.inflight.size === 0 || active >= this.poolSize)) return best
    if (!best && avoid && active >= this.poolSize) avoid.draining = true // make room for a fresh one
    return this.dial()
  }

  private openCount(): number {
    let n = 0
    for (const ch of this.channels) if (!ch.draining && ch.server === this.current) n++
    return n
  }

  private dial(): Channel {
    const ch = new Channel(this.current)
    const dst = this.opts.servers[ch.server]
    this.channels.add(ch)
    this.counters.dials++
    const meta: ConnMeta = { id: this.nextConnId(), frontEnd: 'dns', srcAddress: '127.0.0.1', srcPort: 0 }
    // Through a microtask: a Dialer that throws synchronously must fail this channel, not the caller.
    Promise.resolve().then(() => this.opts.dialer.dial(dst, meta)).then(
      (stream) => this.attach(ch, stream),
      (err) => {
        this.counters.dialFailures++
        this.warn(`cannot reach the remote resolver ${fmt(dst)} through the tunnel: ${errorMessage(err)}`)
        this.failChannel(ch, `dial: ${errorMessage(err)}`, true)
      },
    )
    return ch
  }

  private attach(ch: Channel, stream: Duplex): void {
    if (ch.state === 'closed' || this.closed) {
      stream.destroy()
      return
    }
    ch.stream = stream
    ch.state = 'open'
    this.log.debug('dns', `channel to ${fmt(this.opts.servers[ch.server])} open`)
    stream.on('data', (chunk: Buffer) => this.onData(ch, chunk))
    stream.on('error', (err: Error) => this.failChannel(ch, errorMessage(err), false))
    stream.on('end', () => this.failChannel(ch, 'closed by the resolver', false))
    stream.on('close', () => this.failChannel(ch, 'channel closed', false))
    for (const buf of ch.queued.splice(0)) stream.write(buf)
    if (ch.inflight.size === 0) this.idle(ch)
  }

  private onData(ch: Channel, chunk: Buffer): void {
    const { frames, error } = ch.decoder.push(chunk)
    for (const f of frames) this.onAnswer(ch, f)
    if (error) this.failChannel(ch, 'oversized frame from the resolver', false)
  }

  private onAnswer(ch: Channel, msg: Buffer): void {
    if (msg.length < HEADER_SIZE) return
    const job = ch.inflight.get(msg.readUInt16BE(0))
    // Not a response, a late answer to a query that already timed out, or one for a reused
    // id: drop it (the attempt's timeout still runs).
    if (!job || (msg[2] & 0x80) === 0 || !sameQuestion(job.query, msg)) {
      this.log.debug('dns', `dropping an unexpected answer from ${fmt(this.opts.servers[ch.server])}`)
      return
    }
    ch.inflight.delete(job.wireId)
    ch.answered++
    this.counters.answers++
    this.finish(job, { answer: withId(msg, job.origId), server: fmt(this.opts.servers[ch.server]), ok: true })
    if (ch.inflight.size === 0) this.idle(ch)
  }

  private onTimeout(job: Job, ch: Channel): void {
    if (job.done || job.channel !== ch) return
    ch.inflight.delete(job.wireId)
    this.counters.timeouts++
    this.log.verbose('dns', `no answer from ${fmt(this.opts.servers[ch.server])} within ${this.timeoutMs} ms, retrying`)
    // An open channel that lets a query time out may be stalled: stop using it. A channel
    // still dialling is only slow to open (the SSH connection may be coming back).
    if (ch.state === 'open') {
      ch.draining = true
      this.rotate(ch.server)
    }
    this.retry(job, ch, true)
    if (ch.inflight.size === 0) this.idle(ch)
  }

  private retry(job: Job, failed: Channel, counts: boolean): void {
    if (job.done) return
    if (counts) job.failedAttempts++
    // sends bounds the uncounted retries (channels that closed after answering others).
    if (this.closed || job.failedAttempts >= this.attempts || job.sends >= this.attempts + 2) {
      this.counters.failures++
      this.finish(job, { answer: failureReply(job.query, Rcode.SERVFAIL), server: fmt(this.opts.servers[failed.server]), ok: false })
      return
    }
    this.counters.retries++
    this.send(job, failed)
  }

  private finish(job: Job, r: ResolveResult): void {
    if (job.done) return
    job.done = true
    if (job.timer) clearTimeout(job.timer)
    job.resolve(r)
  }

  private idle(ch: Channel): void {
    if (ch.draining) return this.closeChannel(ch, 'drained')
    if (ch.idleTimer) clearTimeout(ch.idleTimer)
    ch.idleTimer = setTimeout(() => {
      if (ch.inflight.size === 0) this.closeChannel(ch, 'idle')
    }, this.idleMs)
    ch.idleTimer.unref()
  }

  /** Channel broke: retry what was in flight. It counts as a failed attempt only when the
   * channel never answered anything (a resolver that closes after some answers is healthy). */
  private failChannel(ch: Channel, why: string, dialFailed: boolean): void {
    if (ch.state === 'closed') return
    const jobs = [...ch.inflight.values()]
    const counts = dialFailed || ch.answered === 0
    if (why === 'closed by the resolver' && ch.answered > 0 && jobs.length > 0) {
      // It closed with queries outstanding after answering `answered`: that is its limit.
      const known = this.perChannelLimit.get(ch.server)
      if (known === undefined || ch.answered < known) {
        this.perChannelLimit.set(ch.server, ch.answered)
        this.log.verbose('dns', `${fmt(this.opts.servers[ch.server])} closes a connection after ${ch.answered} queries; rotating channels before that`)
      }
    }
    this.closeChannel(ch, why)
    if (counts && jobs.length > 0) this.rotate(ch.server)
    for (const job of jobs) {
      if (job.timer) clearTimeout(job.timer)
      this.retry(job, ch, counts)
    }
  }

  private closeChannel(ch: Channel, why: string): void {
    if (ch.state === 'closed') return
    ch.state = 'closed'
    this.channels.delete(ch)
    if (ch.idleTimer) clearTimeout(ch.idleTimer)
    ch.queued.length = 0
    this.log.debug('dns', `channel to ${fmt(this.opts.servers[ch.server])} closed: ${why}`)
    ch.stream?.destroy()
    if (this.closed) {
      for (const job of ch.inflight.values()) this.finish(job, { answer: failureReply(job.query, Rcode.SERVFAIL), server: fmt(this.opts.servers[ch.server]), ok: false })
      ch.inflight.clear()
    }
  }

  /** After a failure at server i, move on to the next resolver (when there is more than one). */
  private rotate(i: number): void {
    const n = this.opts.servers.length
    if (n < 2 || this.current !== i) return
    this.current = (i + 1) % n
    for (const ch of this.channels) if (ch.server !== this.current) ch.draining = true
    this.log.info('dns', `switching to the remote resolver ${this.currentServer}`)
  }

  /** Warn at most every 10 s, so an SSH outage does not flood the log with one line per query. */
  private warn(msg: string): void {
    const now = Date.now()
    if (now - this.lastWarn >= 10_000) {
      this.lastWarn = now
      this.log.warn('dns', msg)
    } else this.log.debug('dns', msg)
  }
}

/** An error reply; a bare header when the query is unreadable (resolve must always answer). */
function fmt(d: Destination): string {
  return formatHostPort(d.host, d.port)
}
