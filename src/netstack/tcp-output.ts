/**
 * The state of one TCP flow and its output side: segments and window advertisements, the
 * send loop (peer window × congestion window), retransmission, the timers, and the end of the
 * flow. The input side (segment processing, delivery, Duplex events) is TcpConn in
 * tcp-conn.ts, which extends this class; the two files are one state machine split for size.
 *
 * No per-flow interval: one timer slot, armed only while something is outstanding
 * (retransmission, zero-window persist, TIME-WAIT), and a deadline re-checked on expiry so an
 * ACK stream does not cost a timer reset per ACK.
 */
import type { Duplex } from 'node:stream'
import type { ByteCounters, TcpConfig, TcpHost, Timers } from './tcp-config'
import { ReorderQueue, SendBuffer } from './tcp-buffers'
import { NewReno, RtoEstimator } from './tcp-cc'
import { ACK, FIN, type FlowAddr, PSH, RST, SYN, type TcpSegment, buildTcp, payloadOffset, sealTcp, seqDiff, seqLt, synAckOptions } from './tcp-wire'

export type State = 'opening' | 'syn-rcvd' | 'established' | 'time-wait' | 'closed'
type TimerKind = 'rtx' | 'persist' | 'tw'

export abstract class TcpOutput {
  state: State = 'opening'
  /** The stack's table key for this flow. */
  key = ''
  readonly mss: number
  protected duplex: Duplex | undefined
  protected counters: ByteCounters | undefined
  protected readonly cfg: TcpConfig
  protected readonly timers: Timers
  // receive side
  protected readonly irs: number
  protected rcvNxt: number
  protected rcvEdge: number // right edge of the window last advertised
  protected rcvFin = false
  protected passiveClose = false // the application's FIN came before ours: no TIME-WAIT
  protected ackPending = false
  protected unacked = 0
  protected blocked = false // Duplex.write() returned false; no window growth until 'drain'
  // In-order data not yet written to the Duplex: one write per burst of input (see TcpConn.flush).
  protected held: Buffer[] = []
  protected heldBytes = 0
  protected readonly rcvWscale: number
  protected readonly ooo: ReorderQueue
  // send side
  protected readonly iss: number
  protected sndUna: number
  protected sndNxt: number
  protected sndMax: number
  protected sndWnd = 0
  protected sndWl1 = 0
  protected sndWl2 = 0
  protected readonly sndWscale: number
  protected readonly sndBuf = new SendBuffer()
  protected finQueued = false
  protected finSent = false // our FIN is in flight (cleared by a go-back-N rewind)
  protected finAssigned = false // finSeq is set: the FIN has been sent at least once
  protected finAcked = false
  protected finSeq = 0
  protected readonly rto: RtoEstimator
  protected readonly cc: NewReno
  protected rttActive = false
  protected rttSeq = 0
  protected rttStart = 0
  protected retries = 0
  protected reading = false
  protected timer: unknown
  protected timerKind: TimerKind | undefined
  protected deadline = 0

  /** `ourMss` = MTU minus IP and TCP headers; `iss` is our initial sequence number. */
  constructor(
    protected readonly host: TcpHost,
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
  protected readonly ourMss: number
  protected readonly wsOk: boolean
  /** The largest window we can advertise: our buffer, or less without window scaling. */
  protected readonly maxWnd: number

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


  /** Sends as much queued data (then our FIN) as the peer's window and cwnd allow. */
  protected trySend(): void {
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
  protected updateReading(): void {
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
  protected retransmitFirst(): void {
    this.rttActive = false
    const n = Math.min(this.mss, this.sndBuf.length)
    if (n > 0) this.sendData(this.sndUna, n, false)
    else if (this.finSent && !this.finAcked) this.send(this.finSeq, FIN | ACK)
  }

  protected finish(err: Error | undefined): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.clearTimer()
    this.ooo.clear()
    this.held = []
    this.heldBytes = 0
    // A clean close leaves the Duplex alone: both directions have ended and it may still be
    // flushing our last bytes to the channel. Only a failure destroys it.
    const d = this.duplex
    if (err && d && !d.destroyed) d.destroy(err)
    this.host.done(this)
  }

  // ---- timers ---------------------------------------------------------------------------

  protected setTimer(kind: TimerKind, ms: number): void {
    this.clearTimer()
    this.timerKind = kind
    this.deadline = this.timers.now() + ms
    this.timer = this.timers.set(this.onTimer, ms)
  }

  protected clearTimer(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer)
    this.timer = undefined
    this.timerKind = undefined
  }

  /** Arms the retransmission timer; `restart` moves its deadline (new data acknowledged). */
  protected armRtx(restart = false): void {
    if (this.timerKind === 'rtx') {
      if (restart) this.deadline = this.timers.now() + this.rto.rto
      return
    }
    this.setTimer('rtx', this.rto.rto)
  }

  protected readonly onTimer = (): void => {
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

  protected retransmitTimeout(): void {
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
  protected probe(): void {
    if (this.sndWnd > 0 || this.sndBuf.length === 0) return this.trySend()
    if (++this.retries > this.cfg.maxRetries) return this.abort(new Error('the application stopped answering window probes'))
    this.send((this.sndUna - 1) >>> 0, ACK)
    this.setTimer('persist', Math.min(this.cfg.maxRto, this.rto.rto * 2 ** this.retries))
  }

  // ---- output ---------------------------------------------------------------------------

  protected freeSpace(): number {
    if (this.blocked || this.rcvFin) return 0
    return this.cfg.rcvBuf - (this.duplex ? this.duplex.writableLength : 0) - this.heldBytes - this.ooo.bytes
  }

  /** The window field to send; never moves the right edge left (RFC 9293 §3.8.6.2.2). */
  protected windowField(): number {
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

  protected sendSynAck(): void {
    const opts = synAckOptions(this.ourMss, this.wsOk ? this.rcvWscale : undefined)
    const wnd = Math.min(0xffff, this.cfg.rcvBuf) // a SYN's window is never scaled
    this.rcvEdge = (this.rcvNxt + wnd) >>> 0
    this.host.send(sealTcp(this.addr, buildTcp(this.addr, this.iss, this.rcvNxt, SYN | ACK, wnd, opts, 0)))
  }

  protected sendData(seq: number, n: number, push: boolean): void {
    const pkt = buildTcp(this.addr, seq, this.rcvNxt, push ? ACK | PSH : ACK, this.windowField(), undefined, n)
    this.sndBuf.copyOut(seqDiff(seq, this.sndUna), n, pkt, payloadOffset(this.addr, undefined))
    this.ackSent()
    this.host.send(sealTcp(this.addr, pkt))
  }

  protected send(seq: number, flags: number): void {
    const pkt = buildTcp(this.addr, seq, this.rcvNxt, flags, this.windowField(), undefined, 0)
    this.ackSent()
    this.host.send(sealTcp(this.addr, pkt))
  }

  protected sendAck(): void {
    this.send(this.sndNxt, ACK)
  }

  protected ackSent(): void {
    this.ackPending = false
    this.unacked = 0
  }

  protected sendRst(seq: number, ack: number, withAck = true): void {
    this.host.sentReset()
    this.host.send(sealTcp(this.addr, buildTcp(this.addr, seq, ack, withAck ? RST | ACK : RST, 0, undefined, 0)))
  }
}
