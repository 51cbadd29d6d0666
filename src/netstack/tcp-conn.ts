/**
 * One TCP flow terminated by us (RFC 9293), passive side only: the application connects, we
 * answer as the destination it dialled and carry its bytes to and from a Duplex (the SSH
 * channel). The SYN-ACK is sent only once the Duplex exists, so a refused destination is
 * refused before the application ever sees a connection.
 *
 * Backpressure: the window we advertise is the free space of our receive buffer, i.e.
 * rcvBuf minus what the Duplex has not yet taken (writableLength) minus out-of-order data;
 * while the Duplex's write() says "full" the window stops growing, until 'drain'. The other
 * way, we read from the Duplex only while the peer's window has room (pause() otherwise).
 *
 * No per-flow interval: one timer slot, armed only while something is outstanding
 * (retransmission, zero-window persist, TIME-WAIT), and a deadline re-checked on expiry so an
 * ACK stream does not cost a timer reset per ACK.
 */
import type { Duplex } from 'node:stream'
import { ReorderQueue, SendBuffer } from './tcp-buffers'
import { NewReno, RtoEstimator } from './tcp-cc'
import { ACK, FIN, type FlowAddr, PSH, RST, SYN, type TcpSegment, buildTcp, payloadOffset, sealTcp, seqDiff, seqLe, seqLt, synAckOptions } from './tcp-wire'

/** Injected clock and timers (tests use a fake). */
export interface Timers {
  set(fn: () => void, ms: number): unknown
  clear(handle: unknown): void
  now(): number
}

/** Tunables shared by all flows of a stack. */
export interface TcpConfig {
  /** Our receive buffer per flow: the most we advertise and hold (bytes). */
  readonly rcvBuf: number
  /** Most bytes read ahead from the Duplex beyond the peer's window. */
  readonly sndBufMax: number
  readonly minRto: number
  readonly maxRto: number
  readonly initialRto: number
  /** Retransmissions of one segment (or unanswered zero-window probes) before we give up. */
  readonly maxRetries: number
  readonly synAckRetries: number
  readonly timeWaitMs: number
  readonly maxReorderSegments: number
}

export const DEFAULT_TCP_CONFIG: TcpConfig = {
  rcvBuf: 512 * 1024,
  sndBufMax: 4 * 1024 * 1024,
  minRto: 200, // Linux's TCP_RTO_MIN; RFC 6298's 1 s is for the open Internet, not a local device
  maxRto: 60_000,
  initialRto: 1000,
  maxRetries: 10,
  synAckRetries: 5,
  // We are the passive side nearly always and TIME-WAIT only follows an active close; its job
  // here is just to re-ACK a retransmitted FIN, so a couple of seconds is plenty.
  timeWaitMs: 2000,
  maxReorderSegments: 512,
}

/** What a flow needs from its stack. */
export interface TcpHost {
  readonly timers: Timers
  readonly config: TcpConfig
  send(packet: Buffer): void
  /** Call conn.flush() once the current burst of input is processed (ACK batching). */
  deferAck(conn: TcpConn): void
  /** The flow is over (removed from the table). */
  done(conn: TcpConn): void
  /** Counts an RST we sent. */
  sentReset(): void
}

/** Live byte counters the flow updates (up = application → Duplex). */
export interface ByteCounters {
  bytesUp: number
  bytesDown: number
}

type State = 'opening' | 'syn-rcvd' | 'established' | 'time-wait' | 'closed'
type TimerKind = 'rtx' | 'persist' | 'tw'

export class TcpConn {
  state: State = 'opening'
  /** The stack's table key for this flow. */
  key = ''
  readonly mss: number
  private duplex: Duplex | undefined
  private counters: ByteCounters | undefined
  private readonly cfg: TcpConfig
  private readonly timers: Timers
  // receive side
  private readonly irs: number
  private rcvNxt: number
  private rcvEdge: number // right edge of the window last advertised
  private rcvFin = false
  private passiveClose = false // the application's FIN came before ours: no TIME-WAIT
  private ackPending = false
  private unacked = 0
  private blocked = false // Duplex.write() returned false; no window growth until 'drain'
  private readonly rcvWscale: number
  private readonly ooo: ReorderQueue
  // send side
  private readonly iss: number
  private sndUna: number
  private sndNxt: number
  private sndMax: number
  private sndWnd = 0
  private sndWl1 = 0
  private sndWl2 = 0
  private readonly sndWscale: number
  private readonly sndBuf = new SendBuffer()
  private finQueued = false
  private finSent = false // our FIN is in flight (cleared by a go-back-N rewind)
  private finAssigned = false // finSeq is set: the FIN has been sent at least once
  private finAcked = false
  private finSeq = 0
  private readonly rto: RtoEstimator
  private readonly cc: NewReno
  private rttActive = false
  private rttSeq = 0
  private rttStart = 0
  private retries = 0
  private reading = false
  private timer: unknown
  private timerKind: TimerKind | undefined
  private deadline = 0

  /** `ourMss` = MTU minus IP and TCP headers; `iss` is our initial sequence number. */
  constructor(
    private readonly host: TcpHost,
    readonly addr: FlowAddr,
    syn: TcpSegment,
    ourMss: number,
    iss: number,
  ) {
    this.cfg = host.config
    this.timers = host.timers
    this.irs = syn.seq
    this.rcvNxt = (syn.seq + 1) >>> 0
    this.rcvEdge = this.rcvNxt
    // RFC 7323: scaling applies only when both SYNs carry the option.
    const ws = syn.wscale >= 0
    this.wsOk = ws
    this.sndWscale = ws ? syn.wscale : 0
    let shift = 0
    while (ws && 0xffff * 2 ** shift < this.cfg.rcvBuf && shift < 14) shift++
    this.rcvWscale = shift
    this.maxWnd = Math.min(this.cfg.rcvBuf, 0xffff * 2 ** shift)
    // Without an MSS option the peer can take only the protocol minimum (RFC 9293 §3.7.1).
    this.mss = Math.min(ourMss, syn.mss > 0 ? syn.mss : addr.family === 4 ? 536 : 1220)
    this.iss = iss >>> 0
    this.sndUna = this.sndNxt = this.sndMax = (iss + 1) >>> 0
    this.ooo = new ReorderQueue(this.cfg.rcvBuf, this.cfg.maxReorderSegments)
    this.rto = new RtoEstimator(this.cfg.minRto, this.cfg.maxRto, this.cfg.initialRto)
    this.cc = new NewReno(this.mss)
    this.ourMss = ourMss
  }
  private readonly ourMss: number
  private readonly wsOk: boolean
  /** The largest window we can advertise: our buffer, or less without window scaling. */
  private readonly maxWnd: number

  /** The open succeeded: answer the SYN and start carrying data. */
  accept(duplex: Duplex, counters?: ByteCounters): void {
    if (this.state !== 'opening') {
      duplex.destroy() // the application gave up (RST) or the stack closed meanwhile
      return
    }
    if (duplex.destroyed) return this.abort(new Error('the channel closed before the connection was set up'))
    this.duplex = duplex
    this.counters = counters
    // Paused before the 'data' listener, so nothing flows until the handshake completes.
    duplex.pause()
    duplex.on('data', this.onData)
    duplex.on('end', this.onEnd)
    duplex.on('error', this.onError)
    duplex.on('close', this.onClose)
    duplex.on('drain', this.onDrain)
    this.state = 'syn-rcvd'
    this.sendSynAck()
    this.rttActive = true
    this.rttStart = this.timers.now()
    this.armRtx()
  }

  /** Sends RST and forgets the flow (refused open, stack shutdown, fatal error). */
  abort(err?: Error): void {
    if (this.state === 'closed') return
    if (this.state === 'opening') this.sendRst(0, this.rcvNxt)
    else this.sendRst(this.sndNxt, this.rcvNxt)
    this.finish(err ?? new Error('connection reset'))
  }

  /** Forgets the flow without a packet (the stack answered with ICMP instead). */
  discard(): void {
    this.finish(undefined)
  }

  /** Sends the ACK deferred by input(), if still due. */
  flush(): void {
    if (this.ackPending && this.state !== 'closed') this.sendAck()
  }

  /** One segment of this flow. Returns 'reopen' for a new SYN that should replace a TIME-WAIT flow. */
  input(seg: TcpSegment): 'reopen' | undefined {
    const f = seg.flags
    switch (this.state) {
      case 'closed':
        return undefined
      case 'opening':
        // SYN retransmissions while the channel opens are ignored: one flow, one open.
        if (f & RST && seg.seq === this.rcvNxt) this.finish(new Error('connection reset by the application'))
        return undefined
      case 'syn-rcvd':
        if (f & RST) {
          if (seg.seq === this.rcvNxt) this.finish(new Error('connection reset by the application'))
          return undefined
        }
        if (f & SYN) {
          if (!(f & ACK) && seg.seq === this.irs) this.sendSynAck() // our SYN-ACK was lost
          return undefined
        }
        if (!(f & ACK)) return undefined
        if (seg.ack !== ((this.iss + 1) >>> 0)) {
          this.sendRst(seg.ack, 0, false) // RFC 9293 §3.10.7.4: <SEQ=SEG.ACK><CTL=RST>
          return undefined
        }
        this.establish(seg)
        break
      case 'time-wait':
        // A new connection reusing the 4-tuple (RFC 9293 §3.6.1, RFC 6191).
        if (f & SYN && !(f & ACK) && seqLt(this.rcvNxt, seg.seq)) return 'reopen'
        break
    }
    this.segment(seg)
    return undefined
  }

  private establish(seg: TcpSegment): void {
    this.state = 'established'
    if (this.rttActive && this.retries === 0) this.rto.sample(this.timers.now() - this.rttStart)
    this.rttActive = false
    this.retries = 0
    this.clearTimer()
    this.sndWnd = seg.window << this.sndWscale
    this.sndWl1 = seg.seq
    this.sndWl2 = seg.ack
    this.updateReading()
  }

  /** RFC 9293 §3.10.7.4 for the synchronized states. */
  private segment(seg: TcpSegment): void {
    const f = seg.flags
    const len = seg.payload.length + (f & FIN ? 1 : 0)
    const wnd = seqDiff(this.rcvEdge, this.rcvNxt)
    const off = seqDiff(seg.seq, this.rcvNxt)
    const acceptable = len === 0 ? (wnd === 0 ? off === 0 : off >= 0 && off < wnd) : off + len > 0 && (off < wnd || (wnd === 0 && off === 0))
    if (f & RST) {
      // The local kernel is trusted; in-window is enough (no RFC 5961 challenge dance).
      if (acceptable || off === 0) this.finish(new Error('connection reset by the application'))
      return
    }
    if (!acceptable) {
      this.sendAck() // old duplicate or zero-window probe: tell the peer where we are
      if (this.state === 'time-wait' && f & FIN) this.setTimer('tw', this.cfg.timeWaitMs)
    }
    if (f & SYN) {
      if (acceptable) this.sendAck() // challenge ACK (RFC 5961 §4)
      return
    }
    if (!(f & ACK)) return
    this.processAck(seg)
    if (this.state === 'closed') return
    if (acceptable && len > 0) this.receive(seg, off)
    if (this.state === 'established') this.trySend()
    this.checkDone()
  }

  private processAck(seg: TcpSegment): void {
    const ack = seg.ack
    if (seqLt(this.sndMax, ack)) {
      this.sendAck() // acknowledges something never sent
      return
    }
    const acked = seqDiff(ack, this.sndUna)
    const newWnd = seg.window << this.sndWscale
    if (acked > 0) {
      let data = acked
      if (this.finAssigned && !this.finAcked && seqLt(this.finSeq, ack)) {
        this.finAcked = this.finSent = true
        data--
      }
      this.sndBuf.consume(Math.min(data, this.sndBuf.length))
      this.sndUna = ack
      if (seqLt(this.sndNxt, ack)) this.sndNxt = ack
      // Karn: time only segments never retransmitted (rttActive is cleared on retransmission).
      if (this.rttActive && seqLe(this.rttSeq, ack)) {
        this.rto.sample(this.timers.now() - this.rttStart)
        this.rttActive = false
      }
      this.retries = 0
      if (this.cc.acked(acked, ack)) this.retransmitFirst()
      if (this.sndMax !== this.sndUna) this.armRtx(true)
      else if (this.timerKind === 'rtx') this.clearTimer()
    } else if (acked === 0 && len0(seg) && newWnd === this.sndWnd && this.sndMax !== this.sndUna) {
      if (this.cc.duplicate(seqDiff(this.sndMax, this.sndUna), this.sndMax)) this.retransmitFirst()
    }
    // Window update only from a segment at least as new as the last one used (SND.WL1/WL2).
    if (acked >= 0 && (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack)))) {
      this.sndWnd = newWnd
      this.sndWl1 = seg.seq
      this.sndWl2 = ack
      if (this.timerKind === 'persist') {
        this.retries = 0 // the peer answers our probes: it is alive, however long it stays full
        if (newWnd > 0) this.clearTimer()
      }
    }
  }

  /** Data and FIN of an acceptable segment; off = its start relative to RCV.NXT. */
  private receive(seg: TcpSegment, off: number): void {
    let data = seg.payload
    let fin = (seg.flags & FIN) !== 0
    if (this.rcvFin) return this.sendAck() // retransmitted FIN, or junk after it
    if (off < 0) {
      data = data.subarray(Math.min(-off, data.length))
      off = 0
    }
    // Never keep more than the window we advertised (our buffer space is promised, not more).
    const room = seqDiff(this.rcvEdge, this.rcvNxt) - off
    if (data.length > room) {
      data = data.subarray(0, Math.max(0, room))
      fin = false
    }
    if (off > 0) {
      if (data.length > 0 || fin) this.ooo.insert((this.rcvNxt + off) >>> 0, data, fin)
      this.sendAck() // a duplicate ACK: the peer's fast retransmit fills the gap
      return
    }
    this.deliver(data, fin)
    const filled = this.ooo.size > 0
    for (let next = this.ooo.take(this.rcvNxt); next && !this.rcvFin; next = this.ooo.take(this.rcvNxt)) {
      this.deliver(next.data, next.fin)
    }
    if (this.state === 'closed') return
    // Immediate ACK for a FIN, a filled gap (ends the peer's recovery) or a long unacked run;
    // otherwise one ACK per burst of input (see TcpHost.deferAck).
    if (this.rcvFin || filled || this.unacked >= 16 * this.mss) this.sendAck()
    else if (!this.ackPending) {
      this.ackPending = true
      this.host.deferAck(this)
    }
  }

  private deliver(data: Buffer, fin: boolean): void {
    const d = this.duplex!
    if (data.length > 0) {
      if (d.destroyed || d.writableEnded) return this.abort(new Error('the remote side closed; data from the application has nowhere to go'))
      this.rcvNxt = (this.rcvNxt + data.length) >>> 0
      this.unacked += data.length
      if (this.counters) this.counters.bytesUp += data.length
      if (!d.write(data, this.onWritten)) this.blocked = true
    }
    if (fin) {
      this.rcvNxt = (this.rcvNxt + 1) >>> 0
      this.rcvFin = true
      if (!this.finSent) this.passiveClose = true
      this.ooo.clear()
      if (!d.destroyed && !d.writableEnded) d.end() // half-close: the channel gets EOF
    }
  }

  /** Sends as much queued data (then our FIN) as the peer's window and cwnd allow. */
  private trySend(): void {
    for (;;) {
      const flight = seqDiff(this.sndNxt, this.sndUna)
      const unsent = this.sndBuf.length - flight
      if (unsent > 0) {
        const room = Math.min(this.sndWnd, this.cc.cwnd) - flight
        const n = Math.min(this.mss, unsent, room)
        if (n <= 0) break
        // Sender-side silly window avoidance (RFC 9293 §3.8.6.2.1): no runt while more waits.
        if (n < this.mss && n < unsent && flight > 0) break
        this.sendData(this.sndNxt, n, n === unsent)
        if (!this.rttActive) {
          this.rttActive = true
          this.rttSeq = (this.sndNxt + n) >>> 0
          this.rttStart = this.timers.now()
        }
        this.sndNxt = (this.sndNxt + n) >>> 0
        if (seqLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt
        continue
      }
      if (this.finQueued && !this.finSent && unsent === 0) {
        this.finSeq = this.sndNxt
        this.finSent = this.finAssigned = true
        this.send(this.sndNxt, FIN | ACK)
        this.sndNxt = (this.sndNxt + 1) >>> 0
        if (seqLt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt
      }
      break
    }
    if (this.sndMax !== this.sndUna) this.armRtx()
    else if (this.sndWnd === 0 && this.sndBuf.length > 0 && this.timerKind === undefined) {
      this.setTimer('persist', this.rto.rto)
    }
    this.updateReading()
  }

  /** Reads from the Duplex only while what we hold is below the peer's window. */
  private updateReading(): void {
    const d = this.duplex
    if (!d || this.state !== 'established') return
    const limit = Math.min(Math.max(this.sndWnd, this.mss), this.cfg.sndBufMax)
    const want = !this.finQueued && this.sndBuf.length < limit
    if (want === this.reading) return
    this.reading = want
    if (want) d.resume()
    else d.pause()
  }

  /** Fast retransmit / partial ACK: resend the first unacknowledged segment (or our FIN). */
  private retransmitFirst(): void {
    this.rttActive = false
    const n = Math.min(this.mss, this.sndBuf.length)
    if (n > 0) this.sendData(this.sndUna, n, false)
    else if (this.finSent && !this.finAcked) this.send(this.finSeq, FIN | ACK)
  }

  private checkDone(): void {
    if (this.state !== 'established' || !this.rcvFin || !this.finAcked) return
    if (this.passiveClose) return this.finish(undefined)
    this.state = 'time-wait'
    this.setTimer('tw', this.cfg.timeWaitMs)
  }

  private finish(err: Error | undefined): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.clearTimer()
    this.ooo.clear()
    // A clean close leaves the Duplex alone: both directions have ended and it may still be
    // flushing our last bytes to the channel. Only a failure destroys it.
    const d = this.duplex
    if (err && d && !d.destroyed) d.destroy(err)
    this.host.done(this)
  }

  // ---- timers ---------------------------------------------------------------------------

  private setTimer(kind: TimerKind, ms: number): void {
    this.clearTimer()
    this.timerKind = kind
    this.deadline = this.timers.now() + ms
    this.timer = this.timers.set(this.onTimer, ms)
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer)
    this.timer = undefined
    this.timerKind = undefined
  }

  /** Arms the retransmission timer; `restart` moves its deadline (new data acknowledged). */
  private armRtx(restart = false): void {
    if (this.timerKind === 'rtx') {
      if (restart) this.deadline = this.timers.now() + this.rto.rto
      return
    }
    this.setTimer('rtx', this.rto.rto)
  }

  private readonly onTimer = (): void => {
    const kind = this.timerKind
    this.timer = undefined
    this.timerKind = undefined
    if (this.state === 'closed') return
    const left = this.deadline - this.timers.now()
    if (kind === 'rtx' && left > 0) return this.setTimer('rtx', left) // the deadline moved (ACKs arrived)
    if (kind === 'tw') return this.finish(undefined)
    if (kind === 'persist') return this.probe()
    this.retransmitTimeout()
  }

  private retransmitTimeout(): void {
    if (++this.retries > (this.state === 'syn-rcvd' ? this.cfg.synAckRetries : this.cfg.maxRetries)) {
      return this.abort(new Error('the application stopped acknowledging (retransmission timeout)'))
    }
    this.rto.backoff()
    this.rttActive = false
    if (this.state === 'syn-rcvd') {
      this.sendSynAck()
      return this.setTimer('rtx', this.rto.rto)
    }
    if (this.sndMax === this.sndUna) return
    // Go back N from SND.UNA with a one-segment window; ACKs for later data still count (sndMax).
    this.cc.timeout(seqDiff(this.sndMax, this.sndUna))
    this.sndNxt = this.sndUna
    if (!this.finAcked) this.finSent = false
    this.trySend()
  }

  /** Zero-window probe: an ACK one below SND.UNA makes the peer answer with its window. */
  private probe(): void {
    if (this.sndWnd > 0 || this.sndBuf.length === 0) return this.trySend()
    if (++this.retries > this.cfg.maxRetries) return this.abort(new Error('the application stopped answering window probes'))
    this.send((this.sndUna - 1) >>> 0, ACK)
    this.setTimer('persist', Math.min(this.cfg.maxRto, this.rto.rto * 2 ** this.retries))
  }

  // ---- Duplex events --------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === 'closed') return
    this.sndBuf.push(chunk)
    if (this.counters) this.counters.bytesDown += chunk.length
    if (this.state === 'established') this.trySend()
  }

  private readonly onEnd = (): void => {
    if (this.state === 'closed') return
    this.finQueued = true
    if (this.state === 'established') this.trySend()
  }

  private readonly onError = (err: Error): void => this.abort(err)

  private readonly onClose = (): void => {
    // A channel that closes without EOF was dropped by the far side: reset the application.
    if (this.state !== 'closed' && !this.finQueued) this.abort(new Error('remote closed without EOF'))
  }

  private readonly onDrain = (): void => {
    this.blocked = false
    this.windowUpdate()
  }

  private readonly onWritten = (): void => {
    if (!this.blocked) this.windowUpdate()
  }

  /** Tells the peer about space that opened, when it matters (Clark's SWS avoidance). */
  private windowUpdate(): void {
    if (this.state !== 'established' || this.rcvFin || this.ackPending) return
    const known = seqDiff(this.rcvEdge, this.rcvNxt)
    if (known >= this.maxWnd / 2) return
    if (Math.min(this.freeSpace(), this.maxWnd) - known >= Math.max(2 * this.mss, this.maxWnd / 4)) this.sendAck()
  }

  // ---- output ---------------------------------------------------------------------------

  private freeSpace(): number {
    if (this.blocked || this.rcvFin) return 0
    return this.cfg.rcvBuf - (this.duplex ? this.duplex.writableLength : 0) - this.ooo.bytes
  }

  /** The window field to send; never moves the right edge left (RFC 9293 §3.8.6.2.2). */
  private windowField(): number {
    const unit = 2 ** this.rcvWscale
    const known = seqDiff(this.rcvEdge, this.rcvNxt)
    const free = this.freeSpace()
    // Receiver SWS avoidance: only open by at least an MSS (or half the buffer).
    const grow = free - known >= Math.min(this.cfg.rcvBuf / 2, this.mss)
    let field = grow ? Math.floor(free / unit) : Math.ceil(Math.max(0, known) / unit)
    if (field > 0xffff) field = 0xffff
    this.rcvEdge = (this.rcvNxt + field * unit) >>> 0
    return field
  }

  private sendSynAck(): void {
    const opts = synAckOptions(this.ourMss, this.wsOk ? this.rcvWscale : undefined)
    const wnd = Math.min(0xffff, this.cfg.rcvBuf) // a SYN's window is never scaled
    this.rcvEdge = (this.rcvNxt + wnd) >>> 0
    this.host.send(sealTcp(this.addr, buildTcp(this.addr, this.iss, this.rcvNxt, SYN | ACK, wnd, opts, 0)))
  }

  private sendData(seq: number, n: number, push: boolean): void {
    const pkt = buildTcp(this.addr, seq, this.rcvNxt, push ? ACK | PSH : ACK, this.windowField(), undefined, n)
    this.sndBuf.copyOut(seqDiff(seq, this.sndUna), n, pkt, payloadOffset(this.addr, undefined))
    this.ackSent()
    this.host.send(sealTcp(this.addr, pkt))
  }

  private send(seq: number, flags: number): void {
    const pkt = buildTcp(this.addr, seq, this.rcvNxt, flags, this.windowField(), undefined, 0)
    this.ackSent()
    this.host.send(sealTcp(this.addr, pkt))
  }

  private sendAck(): void {
    this.send(this.sndNxt, ACK)
  }

  private ackSent(): void {
    this.ackPending = false
    this.unacked = 0
  }

  private sendRst(seq: number, ack: number, withAck = true): void {
    this.host.sentReset()
    this.host.send(sealTcp(this.addr, buildTcp(this.addr, seq, ack, withAck ? RST | ACK : RST, 0, undefined, 0)))
  }
}

function len0(seg: TcpSegment): boolean {
  return seg.payload.length === 0 && !(seg.flags & (FIN | SYN))
}
