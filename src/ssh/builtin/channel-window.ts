import { BASE_WINDOW, MIN_RTT_MS, nextTarget } from '../window-policy'
import type { Duplex } from 'node:stream'
import { type ChannelWindow, channelWindow } from './ssh2-compat'

/**
 * Adaptive receive windows for the direct-tcpip channels we open. ssh2 gives every channel a
 * fixed 2 MiB window, refilled only at 1 MiB: about 2 MiB per round trip, ~400 Mbit/s at
 * 40 ms. We grant more, earlier, through ssh2's own primitive (ssh2-compat.ts ChannelWindow).
 *
 * Policy (like TCP's dynamic right-sizing): the peer's outstanding credit plus the data buffered
 * but not yet taken by our consumer is kept at a per-channel target. Once per round trip the
 * target is set from what the consumer actually took: GAIN × (bytes per round trip) + 2 MiB,
 * never more than double the previous target, up to a per-channel cap and a budget shared by
 * all channels. Not "double while the window fills": surplus credit becomes data queued in
 * sshd's channel buffer, which sshd grows by copying (docs/design-notes.md has the measurement).
 *
 * The round trip is the smallest "grant → data" delay seen on the channel (what credit really
 * takes to turn into data); until one is seen, the dialer's open-time estimate (noteRtt). No
 * timers: everything runs on ssh2's data pushes and on the consumer's reads.
 */


/** ssh2's initial window and refill level (lib/Channel.js:15): the shared policy's base window. */
export const SSH2_DEFAULT_WINDOW = BASE_WINDOW

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
  /** Times a channel's target grew. */
  growths: number
  /** Current round-trip estimate in ms, if any. */
  rttMs: number | undefined
}

/** Per-channel state; read-only view for tests. */
export interface ManagedWindow {
  readonly target: number
  /** Bytes the peer sent us on this channel. */
  readonly received: number
  /** Smallest delay (ms) from a grant of ours to the arrival of the data it allowed. */
  readonly rtt: number | undefined
}

/** Grant marks remembered per channel for "grant → data" samples (pairs: limit, time). */
const MAX_MARKS = 8

class WindowState implements ManagedWindow {
  target = SSH2_DEFAULT_WINDOW
  received = 0
  epochStart: number
  epochConsumed = 0
  /** Smallest grant → data delay seen on this channel (ms), or undefined. */
  rtt: number | undefined
  /** [limit, time, limit, time, …]: the credit limit after a grant of ours and when we sent it. */
  readonly marks: number[] = []
  constructor(now: number) {
    this.epochStart = now
  }
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
    const c = channelWindow(ch)
    if (!c || this.windows.has(ch)) return false
    const st = new WindowState(this.now())
    this.windows.set(ch, st)
    this.stats.channels++
    // ssh2 pushes CHANNEL_DATA after decrementing incoming.window (client.js:583-585), and
    // Readable calls _read when the consumer wants more (ssh2's own refill after backpressure,
    // Channel.js:148-153): both get ours after them.
    c.hook({
      // Counted before the push: in flowing mode push() emits 'data' synchronously.
      beforePush: (chunk) => {
        if (!chunk) return
        st.received += chunk.length
        if (st.marks.length > 0 && st.received >= st.marks[0]!) this.sample(st)
      },
      afterPush: (chunk) => {
        if (chunk) this.update(ch, c, st, false)
      },
      afterRead: () => this.update(ch, c, st, true),
    })
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

  private update(ch: Duplex, c: ChannelWindow, st: WindowState, reading: boolean): void {
    // Same guard as ssh2's windowAdjust (Channel.js:280): no adjust for a closed channel.
    if (!c.open) return
    const buffered = ch.readableLength
    const hwm = ch.readableHighWaterMark
    this.maybeGrow(st, buffered, hwm)
    // Backpressure: while the consumer is over its high-water mark we grant nothing; the
    // consumer's next _read (when it drops below) brings us back here.
    if (buffered >= hwm) return
    const credit = c.credit + buffered
    const deficit = st.target - credit
    if (deficit <= 0) return
    // Grant in quarters of the target, so one small packet covers many data packets. Readable
    // calls _read after nearly every push in flowing mode, so a read alone only triggers a grant
    // when the peer is nearly out of credit: then no further push may come to trigger one.
    // (While incoming.window <= 1 MiB ssh2 may refill to 2 MiB after us, client.js:590; that only
    // matters for targets under 4 MiB and is ssh2's stock behaviour.)
    if (deficit >= st.target / 4 || (reading && c.credit < st.target / 4)) {
      // uint32 on the wire; a window never exceeds 2^32 − 1 (RFC 4254 §5.2).
      const amt = Math.min(deficit, 0xffffffff - c.credit)
      if (amt <= 0) return
      c.grant(amt)
      this.stats.granted += amt
      // The byte at received + window is the first this grant made sendable: its arrival
      // closes a grant → data sample. A full list just skips a sample.
      if (st.marks.length < 2 * MAX_MARKS) st.marks.push(st.received + c.credit, this.now())
    }
  }

  /** @internal Called when data reached the oldest grant mark(s): one round-trip sample each. */
  sample(st: WindowState): void {
    const now = this.now()
    let i = 0
    while (i < st.marks.length && st.received >= st.marks[i]!) {
      const ms = Math.max(1, now - st.marks[i + 1]!)
      if (st.rtt === undefined || ms < st.rtt) st.rtt = ms
      i += 2
    }
    st.marks.splice(0, i)
  }

  /** Once per round trip, sets the target from what the consumer took (nextTarget). */
  private maybeGrow(st: WindowState, buffered: number, hwm: number): void {
    if (this.rtt === undefined) return
    // The grant → data delay is the round trip credit really takes; until one is seen, the
    // open-time estimate (smaller or equal in practice: it lacks the server's scheduling).
    const rtt = st.rtt ?? this.rtt
    const now = this.now()
    const elapsed = now - st.epochStart
    if (elapsed < rtt) return
    const consumed = st.received - buffered
    const moved = consumed - st.epochConsumed
    st.epochStart = now
    st.epochConsumed = consumed
    // A consumer that lags (data piling up) is the bottleneck, not the window, and what it took
    // says nothing about what the path could carry: leave the target as it is.
    if (buffered >= hwm / 2) return
    let next = nextTarget(st.target, moved, elapsed, rtt, this.maxWindow)
    if (next > st.target) next = Math.min(next, st.target + Math.max(0, this.maxExtraTotal - this.stats.extraReserved))
    if (next === st.target) return
    if (next > st.target) this.stats.growths++
    this.stats.extraReserved += next - st.target
    st.target = next
  }
}
