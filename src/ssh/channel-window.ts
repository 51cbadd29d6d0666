import type { Duplex } from 'node:stream'

/**
 * Adaptive receive windows for the direct-tcpip channels we open.
 *
 * ssh2 1.17 opens every channel with a fixed 2 MiB window (lib/Channel.js:15 MAX_WINDOW,
 * client.js:1646 openChannel) and tops it back up to 2 MiB only once it has fallen to 1 MiB
 * (client.js:590 in CHANNEL_DATA, Channel.js:151 in _read, Channel.js:279 windowAdjust). A
 * download is then bounded by about 2 MiB per round trip: ~400 Mbit/s at 40 ms, less in practice.
 *
 * We grant more, earlier, through the same primitive ssh2 uses (Channel.js:279-286):
 * `incoming.window += amt; _client._protocol.channelWindowAdjust(outgoing.id, amt)` — the
 * recipient of CHANNEL_WINDOW_ADJUST is the peer's channel number, which ssh2 keeps in
 * `outgoing.id`. Incrementing `incoming.window` by exactly what we send keeps ssh2's own
 * accounting right: ssh2 drops data only when `incoming.window === 0` (client.js:580) and its
 * own adjust tops up to MAX_WINDOW − incoming.window (Channel.js:282), so it never re-grants
 * credit we already gave.
 *
 * Policy (like TCP's dynamic right-sizing): the peer's outstanding credit plus the data buffered
 * but not yet taken by our consumer is kept at a per-channel target. When a channel moved at
 * least half its target within one round trip while its consumer kept up, the target doubles,
 * up to a per-channel cap and a budget shared by all channels. No timers: everything runs on
 * ssh2's data pushes and on the consumer's reads.
 */

/** ssh2's initial window and refill level (lib/Channel.js:15). */
export const SSH2_DEFAULT_WINDOW = 2 * 1024 * 1024

/** Below this round trip (ms) channels keep ssh2's fixed window. */
export const MIN_RTT_MS = 5

export interface ChannelWindowOptions {
  /** Largest target window for one channel (default 16 MiB). */
  readonly maxWindow?: number
  /** Budget for windows above ssh2's 2 MiB, summed over all channels (default 64 MiB). */
  readonly maxExtraTotal?: number
  /** Clock in ms (tests). */
  readonly now?: () => number
}

/** Counters, for status output and tests. */
export interface ChannelWindowStats {
  /** Channels under management now. */
  channels: number
  /** Sum over live channels of (target − 2 MiB): what the budget holds. */
  extraReserved: number
  /** Bytes of window we granted (ssh2's own grants are not counted). */
  granted: number
  /** Times a channel's target doubled. */
  growths: number
  /** Current round-trip estimate in ms, if any. */
  rttMs: number | undefined
}

/** The ssh2 channel internals we rely on (checked at runtime by manage()). */
interface Ssh2ChannelInternals {
  incoming: { window: number }
  outgoing: { id: number; state: string }
  _client: { _protocol: { channelWindowAdjust(remoteId: number, amount: number): void } }
  _read(n: number): void
  push(chunk: unknown, encoding?: BufferEncoding): boolean
}

/** Per-channel state; read-only view for tests. */
export interface ManagedWindow {
  readonly target: number
  /** Bytes the peer sent us on this channel. */
  readonly received: number
}

class WindowState implements ManagedWindow {
  target = SSH2_DEFAULT_WINDOW
  received = 0
  epochStart: number
  epochConsumed = 0
  constructor(now: number) {
    this.epochStart = now
  }
}

function internalsOf(ch: Duplex): Ssh2ChannelInternals | undefined {
  const c = ch as unknown as Partial<Ssh2ChannelInternals>
  const ok =
    typeof c.incoming?.window === 'number' &&
    typeof c.outgoing?.id === 'number' &&
    typeof c._client?._protocol?.channelWindowAdjust === 'function' &&
    typeof c._read === 'function'
  return ok ? (c as Ssh2ChannelInternals) : undefined
}

/**
 * Manages the receive windows of the channels handed to manage(). One per session (or dialer):
 * the extra-window budget is shared by every channel it manages.
 */
export class ChannelWindowManager {
  private readonly maxWindow: number
  private readonly maxExtraTotal: number
  private readonly now: () => number
  private rtt: number | undefined
  private readonly windows = new WeakMap<Duplex, WindowState>()
  readonly stats: ChannelWindowStats = { channels: 0, extraReserved: 0, granted: 0, growths: 0, rttMs: undefined }

  constructor(opts: ChannelWindowOptions = {}) {
    this.maxWindow = Math.max(SSH2_DEFAULT_WINDOW, opts.maxWindow ?? 16 * 1024 * 1024)
    this.maxExtraTotal = Math.max(0, opts.maxExtraTotal ?? 64 * 1024 * 1024)
    this.now = opts.now ?? Date.now
  }

  /**
   * Feeds a round-trip sample (the dialer passes the time a channel open took: one RTT plus the
   * server's connect to the target, so an upper bound). Lower samples win at once, higher ones
   * pull the estimate up slowly, so one slow target does not inflate it.
   */
  noteRtt(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return
    const s = Math.max(1, ms)
    this.rtt = this.rtt === undefined || s < this.rtt ? s : this.rtt + (s - this.rtt) / 16
    this.stats.rttMs = this.rtt
  }

  /** The window state of a managed channel (tests, status). */
  windowOf(ch: Duplex): ManagedWindow | undefined {
    return this.windows.get(ch)
  }

  /**
   * Takes over window management of an open ssh2 channel. Returns false (and leaves the channel
   * to ssh2's fixed window) when the channel lacks the ssh2 internals this relies on.
   */
  manage(ch: Duplex): boolean {
    // Near RTT 0 the stock 2 MiB window is never the limit (2 MiB / 5 ms ≈ 400 MB/s), and the
    // per-chunk accounting cost a measured ~40% of single-stream throughput in the testbed:
    // manage only channels whose round trip makes the window matter.
    if (this.stats.rttMs === undefined || this.stats.rttMs < MIN_RTT_MS) return false
    const c = internalsOf(ch)
    if (!c || this.windows.has(ch)) return false
    const st = new WindowState(this.now())
    this.windows.set(ch, st)
    this.stats.channels++
    // Instance-level wraps: ssh2 calls channel.push(data) from CHANNEL_DATA after decrementing
    // incoming.window (client.js:583-585), and Readable calls _read when the consumer wants
    // more (ssh2's own refill after backpressure, Channel.js:148-153). Both run ours after.
    const mgr = this
    const push = c.push
    c.push = function (this: Ssh2ChannelInternals, chunk: unknown, encoding?: BufferEncoding): boolean {
      // Counted before the push: in flowing mode push() emits 'data' synchronously.
      const data = chunk !== null && chunk !== undefined
      if (data) st.received += (chunk as Buffer).length
      const r = push.call(this, chunk, encoding)
      if (data) mgr.update(ch, c, st, false)
      return r
    }
    const read = c._read
    c._read = function (this: Ssh2ChannelInternals, n: number): void {
      read.call(this, n)
      mgr.update(ch, c, st, true)
    }
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.stats.channels--
      this.stats.extraReserved -= st.target - SSH2_DEFAULT_WINDOW
    }
    // ssh2 creates channels with emitClose: false and emits 'close' itself when the channel is
    // done (client.js onCHANNEL_CLOSE); 'end' alone may precede a half-open write side.
    ch.once('close', release)
    return true
  }

  private update(ch: Duplex, c: Ssh2ChannelInternals, st: WindowState, reading: boolean): void {
    // Same guard as ssh2's windowAdjust (Channel.js:280): no adjust for a closed channel.
    if (c.outgoing.state !== 'open') return
    const buffered = ch.readableLength
    const hwm = ch.readableHighWaterMark
    this.maybeGrow(st, buffered, hwm)
    // Backpressure: while the consumer is over its high-water mark we grant nothing; the
    // consumer's next _read (when it drops below) brings us back here.
    if (buffered >= hwm) return
    const credit = c.incoming.window + buffered
    const deficit = st.target - credit
    if (deficit <= 0) return
    // Grant in quarters of the target, so one small packet covers many data packets. Readable
    // calls _read after nearly every push in flowing mode, so a read alone only triggers a grant
    // when the peer is nearly out of credit: then no further push may come to trigger one.
    // (While incoming.window <= 1 MiB ssh2 may refill to 2 MiB after us, client.js:590; that only
    // matters for targets under 4 MiB and is ssh2's stock behaviour.)
    if (deficit >= st.target / 4 || (reading && c.incoming.window < st.target / 4)) {
      // uint32 on the wire; a window never exceeds 2^32 − 1 (RFC 4254 §5.2).
      const amt = Math.min(deficit, 0xffffffff - c.incoming.window)
      if (amt <= 0) return
      c.incoming.window += amt
      c._client._protocol.channelWindowAdjust(c.outgoing.id, amt)
      this.stats.granted += amt
    }
  }

  /** Doubles the target when, over one RTT, the consumer took at least half of it. */
  private maybeGrow(st: WindowState, buffered: number, hwm: number): void {
    if (this.rtt === undefined) return
    const now = this.now()
    if (now - st.epochStart < this.rtt) return
    const consumed = st.received - buffered
    const moved = consumed - st.epochConsumed
    st.epochStart = now
    st.epochConsumed = consumed
    // A consumer that lags (data piling up) is the bottleneck, not the window.
    if (moved < st.target / 2 || buffered >= hwm / 2 || st.target >= this.maxWindow) return
    const room = this.maxExtraTotal - this.stats.extraReserved
    const next = Math.min(this.maxWindow, st.target * 2, st.target + room)
    if (next <= st.target) return
    this.stats.extraReserved += next - st.target
    st.target = next
    this.stats.growths++
  }
}
