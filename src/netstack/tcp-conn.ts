/**
 * One TCP flow terminated by us (RFC 9293), passive side only: the application connects, we
 * answer as the destination it dialled and carry its bytes to and from a Duplex (the SSH
 * channel). The SYN-ACK is sent only once the Duplex exists, so a refused destination is
 * refused before the application ever sees a connection.
 *
 * Backpressure: the window we advertise is the free space of our receive buffer, i.e.
 * rcvBuf minus what the Duplex has not yet taken (writableLength), minus in-order data held
 * for the end of the input burst (one Duplex write per burst, see flush), minus out-of-order
 * data; while the Duplex's write() says "full" the window stops growing, until 'drain'. The other
 * way, we read from the Duplex only while the peer's window has room (pause() otherwise).
 *
 * This file is the input side (segments from the application, delivery into the Duplex, the
 * Duplex's events); state, output, retransmission and timers are in tcp-output.ts.
 */
import type { Duplex } from 'node:stream'
import type { ByteCounters } from './tcp-config'
import { TcpOutput } from './tcp-output'
import { ACK, FIN, RST, SYN, type TcpSegment, seqDiff, seqLe, seqLt } from './tcp-wire'

export { DEFAULT_TCP_CONFIG, type ByteCounters, type TcpConfig, type TcpHost, type Timers } from './tcp-config'

export class TcpConn extends TcpOutput {
  private queued = false // in the stack's end-of-burst queue (flush pending)

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

  /**
   * End of a burst of input: writes the data received meanwhile to the Duplex in one piece,
   * then sends the deferred ACK if still due. One write per burst rather than one per segment
   * matters: every write to an ssh2 channel is at least one SSH packet (encrypted, MACed and
   * framed on its own), which at one per 1460-byte segment cost more than everything else on
   * the upload path.
   */
  flush(): void {
    this.queued = false
    if (this.state === 'closed') return
    if (this.writeHeld() && this.ackPending) this.sendAck()
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
    // otherwise one ACK per burst of input (see TcpHost.deferAck). The data itself goes to the
    // Duplex at the end of the burst either way (flush); the window already counts it.
    if (this.rcvFin || filled || this.unacked >= 16 * this.mss) this.sendAck()
    else this.ackPending = true
    if ((this.ackPending || this.heldBytes > 0) && !this.queued) {
      this.queued = true
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
      this.held.push(data)
      this.heldBytes += data.length
    }
    if (fin) {
      this.rcvNxt = (this.rcvNxt + 1) >>> 0
      this.rcvFin = true
      if (!this.finSent) this.passiveClose = true
      this.ooo.clear()
      this.writeHeld()
      if (!d.destroyed && !d.writableEnded) d.end() // half-close: the channel gets EOF
    }
  }

  /** Writes the held in-order data to the Duplex (one chunk); false when that ended the flow. */
  private writeHeld(): boolean {
    if (this.heldBytes === 0) return true
    const d = this.duplex!
    const chunk = this.held.length === 1 ? this.held[0] : Buffer.concat(this.held, this.heldBytes)
    this.held = []
    this.heldBytes = 0
    if (d.destroyed || d.writableEnded) {
      this.abort(new Error('the remote side closed; data from the application has nowhere to go'))
      return false
    }
    if (!d.write(chunk, this.onWritten)) this.blocked = true
    return true
  }


  private checkDone(): void {
    if (this.state !== 'established' || !this.rcvFin || !this.finAcked) return
    if (this.passiveClose) return this.finish(undefined)
    this.state = 'time-wait'
    this.setTimer('tw', this.cfg.timeWaitMs)
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
}


function len0(seg: TcpSegment): boolean {
  return seg.payload.length === 0 && !(seg.flags & (FIN | SYN))
}
