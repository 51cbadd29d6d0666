/**
 * One SSH channel spoken by us over a proxy-mode mux connection, as a Duplex:
 *  - write() becomes CHANNEL_DATA within the peer's window and max packet size (backpressure:
 *    the write callback waits for WINDOW_ADJUST, and for the mux socket to drain);
 *  - end() sends CHANNEL_EOF once everything written has been sent (exact half-close);
 *  - incoming data is pushed as views of the received frames, within the credit we granted,
 *    and credit is granted by ReceiveWindow as the consumer takes data;
 *  - the peer's EOF ends the readable side; its CLOSE without EOF (or a protocol error) fails
 *    the channel, so whoever pipes it resets its client instead of passing on a clean FIN;
 *  - destroy() sends CHANNEL_CLOSE at once (the channel number stays reserved until the peer's
 *    CLOSE, RFC 4254 §5.3, so late data can never reach a newer channel).
 */
import { Duplex } from 'node:stream'
import { TunnelError } from '../../errors'
import { ReceiveWindow, type WindowBudget } from './receive-window'
import { channelClose, channelEof, channelWindowAdjust, dataHeader } from './conn-messages'

/** What a channel needs from its connection. */
export interface ChannelHost {
  /** Queues frames on the mux socket (coalesced into one writev per tick). */
  send(...frames: Buffer[]): void
  /** False while the mux socket's buffer is full: stop sending data until 'drain'. */
  canSend(): boolean
  /** Calls ch.resumeSend() once the socket has drained. */
  waitDrain(ch: Channel): void
  /** Both CLOSEs have been exchanged: the local number may be reused. */
  released(ch: Channel): void
  /** True once the connection is gone: nothing can be sent any more. */
  isDown(): boolean
}

export interface ChannelInit {
  readonly host: ChannelHost
  readonly localId: number
  readonly budget: WindowBudget
  /** Readable buffer the consumer may lag by before credit stops (default 256 KiB). */
  readonly readableHighWaterMark?: number
}

/** Largest data packet we accept, announced in CHANNEL_OPEN: sshd's own default (CHAN_TCP_PACKET_DEFAULT). */
export const OUR_MAX_PACKET = 32 * 1024

export class Channel extends Duplex {
  readonly localId: number
  remoteId = -1
  /** Bytes the peer lets us send now. */
  private sendWindow = 0
  private remoteMaxPacket = OUR_MAX_PACKET
  readonly window: ReceiveWindow
  /** Set once the peer's CLOSE arrived / ours was sent. */
  closeReceived = false
  closeSent = false
  eofReceived = false
  private eofSent = false
  private confirmed = false
  /** A write waiting for window or drain. */
  private pending: { chunk: Buffer; off: number; cb: (err?: Error | null) => void } | undefined
  /** end() waits for the pending write, then EOF. */
  private pendingFinal: ((err?: Error | null) => void) | undefined
  /** Data that arrived before the consumer attached, counted against the window like any. */
  bytesIn = 0
  bytesOut = 0
  private readonly host: ChannelHost

  constructor(init: ChannelInit) {
    super({ allowHalfOpen: true, readableHighWaterMark: init.readableHighWaterMark ?? 256 * 1024, emitClose: true, autoDestroy: false })
    this.host = init.host
    this.localId = init.localId
    this.window = new ReceiveWindow(init.budget)
  }

  /** The peer accepted the channel. */
  confirm(remoteId: number, window: number, maxPacket: number): void {
    this.remoteId = remoteId
    this.sendWindow = window
    // A peer may announce a tiny or absurd max packet; stay within what makes sense both ways.
    this.remoteMaxPacket = Math.max(1, Math.min(maxPacket, 256 * 1024))
    this.confirmed = true
  }

  // ---- incoming (called by the connection) ----

  onData(data: Buffer): void {
    if (this.closeSent || this.destroyed) return // late data after our CLOSE: dropped (RFC 4254 §5.3)
    if (this.eofReceived || !this.window.onData(data.length)) {
      this.fail(new TunnelError('SSH_PROTOCOL', `ssh: channel ${this.localId}: the server sent more than the window allowed`))
      return
    }
    this.bytesIn += data.length
    this.push(data)
    const amt = this.window.grant(this.readableLength, this.readableHighWaterMark)
    if (amt > 0) this.host.send(channelWindowAdjust(this.remoteId, amt))
  }

  /** Extended data (stderr of an exec): counted against the window like data, emitted as 'stderr'. */
  onExtendedData(data: Buffer): void {
    if (this.closeSent || this.destroyed) return
    if (this.eofReceived || !this.window.onData(data.length)) {
      this.fail(new TunnelError('SSH_PROTOCOL', `ssh: channel ${this.localId}: the server sent more than the window allowed`))
      return
    }
    this.emit('stderr', data)
    // Nobody buffers stderr: the credit can be returned at once.
    const amt = this.window.grant(this.readableLength, this.readableHighWaterMark)
    if (amt > 0) this.host.send(channelWindowAdjust(this.remoteId, amt))
  }

  /** Confirmed after we gave up on it (or after destroy): close it without using it. */
  abandon(): void {
    if (!this.closeSent && !this.host.isDown()) {
      this.closeSent = true
      this.host.send(channelClose(this.remoteId))
    }
    this.destroy()
  }

  onWindowAdjust(bytes: number): void {
    // uint32 arithmetic on the wire: a window never exceeds 2^32 − 1 (RFC 4254 §5.2).
    this.sendWindow = Math.min(0xffffffff, this.sendWindow + bytes)
    this.flushPending()
  }

  onEof(): void {
    if (this.eofReceived) return
    this.eofReceived = true
    if (!this.closeSent) this.push(null)
    this.closeIfDone()
  }

  onClose(): void {
    this.closeReceived = true
    if (!this.closeSent) {
      this.closeSent = true
      if (this.remoteId >= 0) this.host.send(channelClose(this.remoteId))
    }
    this.host.released(this)
    if (this.destroyed) return
    // Nothing more may be sent: a write still waiting for window is dropped, like bytes sent
    // to a socket whose peer has gone.
    this.dropPending()
    if (!this.eofReceived) {
      // CLOSE without EOF: the far end vanished mid-stream. Not a clean end for the client.
      this.fail(new TunnelError('SSH_CONNECT', `ssh: channel ${this.localId} closed by the server without EOF`))
      return
    }
    // A clean close: let the consumer read what is buffered ('end'), then close.
    if (this.readableEnded) this.destroy()
    else this.once('end', () => this.destroy())
  }

  /**
   * The connection under us died (or a protocol error): fail without sending anything. With
   * nobody listening for 'error' (a channel not yet handed to its consumer) it just closes:
   * an unhandled 'error' would end the process; 'close' before 'end' still tells a consumer
   * that attaches later that the stream did not end cleanly.
   */
  fail(err: Error): void {
    if (this.destroyed) return
    this.destroy(this.listenerCount('error') > 0 ? err : undefined)
  }

  // ---- Duplex ----

  override _read(n: number): void {
    if (!this.confirmed || this.closeSent || this.eofReceived) return
    const amt = this.window.grant(this.readableLength, this.readableHighWaterMark, n)
    if (amt > 0) this.host.send(channelWindowAdjust(this.remoteId, amt))
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.closeReceived || this.closeSent) {
      cb() // dropped: the channel is closing (see onClose)
      return
    }
    this.pending = { chunk, off: 0, cb }
    this.flushPending()
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.pending) {
      this.pendingFinal = cb
      return
    }
    this.sendEof()
    cb()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.dropPending()
    if (!this.closeSent && this.confirmed && !this.host.isDown()) {
      this.closeSent = true
      this.host.send(channelClose(this.remoteId))
    }
    this.window.release()
    cb(err)
  }

  /** The mux socket drained: continue a write that was waiting for it. */
  resumeSend(): void {
    this.flushPending()
  }

  private sendEof(): void {
    if (this.eofSent || this.closeSent || this.closeReceived) return
    this.eofSent = true
    this.host.send(channelEof(this.remoteId))
    this.closeIfDone()
  }

  /** Both directions ended: CLOSE, as OpenSSH does for a dead channel (channels.c chan_is_dead). */
  private closeIfDone(): void {
    if (!this.eofSent || !this.eofReceived || this.closeSent || this.closeReceived) return
    this.closeSent = true
    this.host.send(channelClose(this.remoteId))
  }

  private flushPending(): void {
    const p = this.pending
    if (!p) return
    const len = p.chunk.length
    while (p.off < len) {
      if (this.sendWindow <= 0) return // WINDOW_ADJUST calls us again
      if (!this.host.canSend()) {
        this.host.waitDrain(this)
        return
      }
      const n = Math.min(len - p.off, this.sendWindow, this.remoteMaxPacket)
      const data = p.off === 0 && n === len ? p.chunk : p.chunk.subarray(p.off, p.off + n)
      this.host.send(dataHeader(this.remoteId, n), data)
      p.off += n
      this.sendWindow -= n
      this.bytesOut += n
    }
    this.pending = undefined
    p.cb()
    const fin = this.pendingFinal
    if (fin) {
      this.pendingFinal = undefined
      this.sendEof()
      fin()
    }
  }

  private dropPending(): void {
    const p = this.pending
    this.pending = undefined
    p?.cb()
    const fin = this.pendingFinal
    this.pendingFinal = undefined
    fin?.()
  }
}
