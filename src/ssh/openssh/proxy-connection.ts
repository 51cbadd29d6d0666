/**
 * The connection layer over one proxy-mode mux connection (PROTOCOL.mux §9): after MUX_S_PROXY
 * the control socket carries unencrypted, unpadded SSH connection-protocol packets, and the
 * master renumbers channels so ours never collide with anyone else's. We open channels
 * (direct-tcpip, session), move data with our own windows, and close them; the master does
 * transport, keys, auth and crypto.
 *
 * What the master passes back (channels.c channel_proxy_upstream): channel messages of
 * channels we opened. Global requests other than tcpip-forward are refused by it (it drops
 * the whole proxy connection), and replies to global requests never come back, so this layer
 * sends none (the master does keepalives; -R goes through MUX_C_OPEN_FWD, see mux-client.ts).
 *
 * Writes of one event-loop turn leave in one writev (cork/uncork); the socket's fill level
 * gives channels their backpressure towards the master.
 */
import { EventEmitter } from 'node:events'
import type net from 'node:net'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import { Channel, type ChannelHost, OUR_MAX_PACKET } from './channel'
import { BASE_WINDOW, type WindowBudget } from './receive-window'
import { FrameSplitter, WireError } from './wire'
import { type ConnMessage, MSG, channelExec, channelFailure, channelOpenDirectTcpip, channelOpenFailure, channelOpenSession, parseConnMessage } from './conn-messages'

/** A channel open the server refused: the RFC 4254 reason code and its description. */
export class OpenRefused extends Error {
  constructor(
    readonly reasonCode: number,
    readonly description: string,
  ) {
    super(description || `channel open failed (reason ${reasonCode})`)
    this.name = 'OpenRefused'
  }
}

interface PendingOpen {
  readonly channel: Channel
  readonly resolve: (ch: Channel) => void
  readonly reject: (e: Error) => void
  readonly started: number
  timer: NodeJS.Timeout | undefined
  /** Given up on (timeout, connection closing): close the channel if it is confirmed late. */
  abandoned: boolean
}

export interface ProxyConnectionStats {
  channelsOpen: number
  channelsTotal: number
  /**
   * Opens the server refused: OpenSSH keeps a half-made proxy channel for each in the master
   * until the master exits (see reuse.ts: why this matters when the master is not ours).
   */
  halfMade: number
}

/**
 * Emits 'close' (Error | undefined) once the mux socket is gone; every channel has been failed
 * by then (so piped clients are reset, not given a clean EOF).
 */
export class ProxyConnection extends EventEmitter implements ChannelHost {
  readonly stats: ProxyConnectionStats = { channelsOpen: 0, channelsTotal: 0, halfMade: 0 }
  private readonly channels = new Map<number, Channel>()
  private readonly opens = new Map<number, PendingOpen>()
  /** Channel requests awaiting CHANNEL_SUCCESS / FAILURE, per local channel, in order. */
  private readonly replies = new Map<number, Array<(ok: boolean) => void>>()
  private readonly drainWaiters = new Set<Channel>()
  private readonly splitter: FrameSplitter
  private nextId = 0
  private corked = false
  private down = false
  private closeError: Error | undefined

  constructor(
    readonly socket: net.Socket,
    private readonly budget: WindowBudget,
    private readonly log: Logger,
  ) {
    super()
    this.splitter = new FrameSplitter((f) => this.onFrame(f))
    socket.on('data', (chunk: Buffer) => {
      try {
        this.splitter.push(chunk)
      } catch (e) {
        this.teardown(e instanceof Error ? e : new Error(String(e)))
      }
    })
    socket.on('drain', () => {
      const waiting = [...this.drainWaiters]
      this.drainWaiters.clear()
      for (const ch of waiting) if (!ch.destroyed) ch.resumeSend()
    })
    socket.on('error', (e) => this.teardown(e))
    socket.on('close', () => this.teardown(undefined))
  }

  /** Bytes the master sent before MUX_S_PROXY was parsed (already in proxy framing). */
  feed(leftover: Buffer): void {
    if (leftover.length > 0) this.splitter.push(leftover)
  }

  get isClosed(): boolean {
    return this.down
  }

  // ---- ChannelHost ----

  send(...frames: Buffer[]): void {
    if (this.down) return
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.socket.uncork()
      })
    }
    for (const f of frames) this.socket.write(f)
  }

  canSend(): boolean {
    return !this.socket.writableNeedDrain
  }

  waitDrain(ch: Channel): void {
    this.drainWaiters.add(ch)
  }

  released(ch: Channel): void {
    if (this.channels.get(ch.localId) === ch) {
      this.channels.delete(ch.localId)
      this.replies.delete(ch.localId)
    }
  }

  isDown(): boolean {
    return this.down
  }

  // ---- opening channels ----

  /** Opens a direct-tcpip channel; rejects with OpenRefused, or a timeout / connection error. */
  openDirectTcpip(dst: { host: string; port: number }, orig: { host: string; port: number }, timeoutMs: number): Promise<Channel> {
    return this.open((id) => channelOpenDirectTcpip(id, BASE_WINDOW, OUR_MAX_PACKET, dst, orig), timeoutMs)
  }

  /** Opens a session channel (for exec). */
  openSession(timeoutMs: number): Promise<Channel> {
    return this.open((id) => channelOpenSession(id, BASE_WINDOW, OUR_MAX_PACKET), timeoutMs)
  }

  /** Sends `exec` on a session channel; resolves true on CHANNEL_SUCCESS, false on FAILURE. */
  exec(ch: Channel, command: string): Promise<boolean> {
    return new Promise((resolve) => {
      const q = this.replies.get(ch.localId) ?? []
      q.push(resolve)
      this.replies.set(ch.localId, q)
      this.send(channelExec(ch.remoteId, command))
    })
  }

  /** Round-trip time of the last channel open (for the window budget), if one was measured. */
  private open(build: (id: number) => Buffer, timeoutMs: number): Promise<Channel> {
    if (this.down) return Promise.reject(this.closeError ?? new TunnelError('NOT_CONNECTED', 'ssh: the master connection is closed'))
    const id = this.allocateId()
    const channel = new Channel({ host: this, localId: id, budget: this.budget })
    this.channels.set(id, channel)
    return new Promise((resolve, reject) => {
      const p: PendingOpen = { channel, resolve, reject, started: performance.now(), timer: undefined, abandoned: false }
      p.timer = setTimeout(() => {
        p.abandoned = true
        p.timer = undefined
        reject(new OpenTimeout(timeoutMs))
      }, timeoutMs)
      this.opens.set(id, p)
      this.send(build(id))
    })
  }

  /** The lowest free local channel number (the master renumbers them anyway). */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId
      this.nextId = (this.nextId + 1) >>> 0
      if (!this.channels.has(id)) return id
    }
  }

  // ---- incoming ----

  private onFrame(frame: Buffer): void {
    const m = parseConnMessage(frame)
    switch (m.type) {
      case MSG.CHANNEL_DATA:
        return this.channel(m.recipient)?.onData(m.data)
      case MSG.CHANNEL_EXTENDED_DATA:
        return this.channel(m.recipient)?.onExtendedData(m.data)
      case MSG.CHANNEL_WINDOW_ADJUST:
        return this.channel(m.recipient)?.onWindowAdjust(m.bytes)
      case MSG.CHANNEL_EOF:
        return this.channel(m.recipient)?.onEof()
      case MSG.CHANNEL_CLOSE:
        return this.channel(m.recipient)?.onClose()
      case MSG.CHANNEL_OPEN_CONFIRMATION:
        return this.onConfirmation(m)
      case MSG.CHANNEL_OPEN_FAILURE:
        return this.onOpenFailure(m)
      case MSG.CHANNEL_SUCCESS:
      case MSG.CHANNEL_FAILURE: {
        const resolve = this.replies.get(m.recipient)?.shift()
        resolve?.(m.type === MSG.CHANNEL_SUCCESS)
        return
      }
      case MSG.CHANNEL_REQUEST: {
        const ch = this.channel(m.recipient)
        ch?.emit('request', m.request, m.data)
        if (m.wantReply && ch) this.send(channelFailure(ch.remoteId))
        return
      }
      case MSG.CHANNEL_OPEN:
        // The master keeps forwarded connections to itself (-R goes through MUX_C_OPEN_FWD):
        // anything offered here was not asked for.
        this.send(channelOpenFailure(m.sender, 1, 'not accepted by this client'))
        return
      default:
        this.log.debug('ssh', `openssh: ignoring message ${m.type === 'other' ? m.code : m.type} from the master`)
    }
  }

  /** A channel that is open (confirmed) and not yet released. */
  private channel(id: number): Channel | undefined {
    const ch = this.channels.get(id)
    return ch && ch.remoteId >= 0 ? ch : undefined
  }

  private onConfirmation(m: Extract<ConnMessage, { type: typeof MSG.CHANNEL_OPEN_CONFIRMATION }>): void {
    const p = this.opens.get(m.recipient)
    if (!p) {
      this.teardown(new WireError(`confirmation for channel ${m.recipient}, which we did not open`))
      return
    }
    this.opens.delete(m.recipient)
    clearTimeout(p.timer)
    const ch = p.channel
    ch.confirm(m.sender, m.window, m.maxPacket)
    this.stats.channelsOpen++
    this.stats.channelsTotal++
    ch.once('close', () => this.stats.channelsOpen--)
    if (p.abandoned || ch.destroyed) {
      // Too late (the open cannot be cancelled in SSH): close it at once.
      ch.abandon()
      return
    }
    this.budget.noteRtt(performance.now() - p.started)
    p.resolve(ch)
  }

  private onOpenFailure(m: Extract<ConnMessage, { type: typeof MSG.CHANNEL_OPEN_FAILURE }>): void {
    const p = this.opens.get(m.recipient)
    if (!p) {
      this.teardown(new WireError(`open failure for channel ${m.recipient}, which we did not open`))
      return
    }
    this.opens.delete(m.recipient)
    clearTimeout(p.timer)
    this.channels.delete(m.recipient)
    this.stats.halfMade++
    p.channel.destroy()
    if (!p.abandoned) p.reject(new OpenRefused(m.reason, m.description))
  }

  // ---- closing ----

  /** Opens still waiting for an answer. */
  get pendingOpens(): number {
    return this.opens.size
  }

  /**
   * Ends gracefully: closes every channel (CLOSE to the server), then waits up to `ms` for opens
   * still in flight to be answered, so the caller knows how many half-made channels remain.
   * Does not close the socket.
   */
  async quiesce(ms: number): Promise<void> {
    for (const ch of [...this.channels.values()]) if (ch.remoteId >= 0 && !ch.destroyed) ch.destroy()
    const deadline = Date.now() + ms
    while (this.opens.size > 0 && !this.down && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    // Let the CLOSEs leave before anyone closes the socket.
    await new Promise((r) => setImmediate(r))
  }

  /** Closes the mux socket; channels fail with `err` (or a plain "closed"). */
  close(err?: Error): void {
    this.teardown(err ?? new TunnelError('NOT_CONNECTED', 'ssh: connection closed'))
    this.socket.destroy()
  }

  private teardown(err: Error | undefined): void {
    if (this.down) return
    this.down = true
    const why = err ?? new TunnelError('SSH_CONNECT', 'ssh: the OpenSSH master closed the connection')
    this.closeError = why instanceof TunnelError ? why : new TunnelError('SSH_CONNECT', `ssh: master connection: ${errorMessage(why)}`, { cause: why })
    for (const p of this.opens.values()) {
      clearTimeout(p.timer)
      if (!p.abandoned) p.reject(this.closeError)
    }
    this.opens.clear()
    for (const q of this.replies.values()) for (const resolve of q) resolve(false)
    this.replies.clear()
    const channels = [...this.channels.values()]
    this.channels.clear()
    this.drainWaiters.clear()
    for (const ch of channels) ch.fail(this.closeError)
    if (!this.socket.destroyed) this.socket.destroy()
    this.emit('close', err)
  }
}

/** No answer to a channel open within the timeout. */
export class OpenTimeout extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms / 1000} s`)
    this.name = 'OpenTimeout'
  }
}
