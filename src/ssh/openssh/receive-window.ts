/**
 * Receive windows of the channels we own (the OpenSSH engine speaks the connection protocol
 * itself, so the window is ours, not a library's). Same policy as the built-in engine's
 * channel-window.ts — see the long comment there for why credit is kept near
 * 1.25 × bytes-per-round-trip + 2 MiB and not doubled: surplus credit becomes data queued
 * in sshd's channel buffer, which it grows 32 KiB at a time.
 *
 * A ReceiveWindow is pure bookkeeping: the channel tells it what arrived and what the consumer
 * took, and it answers how much credit to grant now. One WindowBudget is shared by the
 * channels of a connection, so the sum of grown windows stays bounded.
 */
import { MIN_RTT_MS, nextTarget } from '../window-policy'

export { MIN_RTT_MS } from '../window-policy'

/**
 * The window a channel starts with and never drops below, and the surplus kept above what a
 * round trip moves: 512 KiB here, not the built-in engine's 2 MiB. Credit that the consumer has
 * not taken yet waits in the master's one output buffer for the whole proxy connection — an
 * sshbuf that OpenSSH grows by what each packet needs, copying and zeroing the old one every
 * time (recallocarray, fresh pages each time above malloc's mmap threshold). With 2 MiB per
 * channel, four downloads at RTT 0 let 8 MiB pile up there and the master spent 2–5 s of CPU
 * per 256 MiB growing it (`perf`: memmove, page faults, memset), against 0.6–0.9 s at 512 KiB;
 * at a real round trip the windows still grow with what each round trip moves.
 */
export const BASE_WINDOW = 512 * 1024
export const WINDOW_HEADROOM = 512 * 1024

/** Least credit a read grants when the peer has none (one packet). */
const MIN_GRANT = 32 * 1024
/** Grant → data marks remembered per channel (pairs: limit, time). */
const MAX_MARKS = 8

/** Shared by the channels of one connection: RTT estimate and the budget for grown windows. */
export class WindowBudget {
  /** Sum over live windows of (target − BASE_WINDOW). */
  extraReserved = 0
  /** Round-trip estimate from channel opens (ms), until a channel measures its own. */
  rttMs: number | undefined
  /** Bytes of credit granted in all (for status and tests). */
  granted = 0
  growths = 0

  constructor(
    readonly maxWindow = 16 * 1024 * 1024,
    readonly maxExtraTotal = 64 * 1024 * 1024,
    readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * A channel open's duration: one round trip plus the server's connect, so an upper bound.
   * Lower samples win at once; higher ones pull the estimate up slowly.
   */
  noteRtt(ms: number): void {
    if (!(ms > 0)) return
    this.rttMs = this.rttMs === undefined || ms < this.rttMs ? ms : this.rttMs + (ms - this.rttMs) / 8
  }
}

export class ReceiveWindow {
  target = BASE_WINDOW
  /** Credit the peer still has: what we granted minus what it sent. */
  credit: number
  /** Bytes received in all. */
  received = 0
  /** Smallest "grant → data" delay seen on this channel (ms). */
  rtt: number | undefined
  private epochStart: number
  private epochConsumed = 0
  private readonly marks: number[] = []
  private released = false

  constructor(
    private readonly budget: WindowBudget,
    initial = BASE_WINDOW,
  ) {
    this.credit = initial
    this.epochStart = budget.now()
  }

  /**
   * `n` bytes arrived. Returns false when they exceed the credit granted: the peer broke the
   * protocol (RFC 4254 §5.2) and the channel must be closed.
   */
  onData(n: number): boolean {
    if (n > this.credit) return false
    this.credit -= n
    this.received += n
    if (this.marks.length > 0 && this.received >= this.marks[0]!) this.sample()
    return true
  }

  /**
   * How much credit to grant now (0: none), given what the consumer has not taken yet
   * (`buffered`) and its high-water mark. `wanted`: the consumer asked for this many bytes
   * (a stream's _read(n)); undefined when called because data arrived. The caller sends a
   * WINDOW_ADJUST of the returned size.
   *
   * A Readable calls _read() BEFORE it takes the chunk it reads from the buffer, and then not
   * again until the next push(): so a read must never leave the peer without credit, or no
   * data comes, no push happens, and the stream stalls for good with an empty buffer.
   */
  grant(buffered: number, hwm: number, wanted?: number): number {
    this.maybeGrow(buffered, hwm)
    const reading = wanted !== undefined
    // Backpressure: while the consumer is over its mark, no credit; its next read brings us back.
    if (!reading && buffered >= hwm) return 0
    // What stays buffered once this read is served.
    const left = reading ? Math.max(0, buffered - wanted) : buffered
    let deficit = this.target - (this.credit + left)
    if (reading && this.credit === 0) deficit = Math.max(deficit, MIN_GRANT)
    if (deficit <= 0) return 0
    // Grant in quarters of the target (one small packet covers many data packets), or when the
    // peer is nearly out of credit and only a read can trigger a grant.
    if (deficit < this.target / 4 && !(reading && this.credit < this.target / 4)) return 0
    const amt = Math.min(deficit, 0xffffffff - this.credit)
    if (amt <= 0) return 0
    this.credit += amt
    this.budget.granted += amt
    // The byte at received + credit is the first this grant made sendable: its arrival closes
    // a grant → data sample.
    if (this.marks.length < 2 * MAX_MARKS) this.marks.push(this.received + this.credit, this.budget.now())
    return amt
  }

  /** The channel is gone: return its share of the budget (idempotent). */
  release(): void {
    if (this.released) return
    this.released = true
    this.budget.extraReserved -= this.target - BASE_WINDOW
  }

  private sample(): void {
    const now = this.budget.now()
    let i = 0
    while (i < this.marks.length && this.received >= this.marks[i]!) {
      const ms = Math.max(1, now - this.marks[i + 1]!)
      if (this.rtt === undefined || ms < this.rtt) this.rtt = ms
      i += 2
    }
    this.marks.splice(0, i)
  }

  /** Once per round trip, sets the target from what the consumer took (nextTarget). */
  private maybeGrow(buffered: number, hwm: number): void {
    const rtt = this.rtt ?? this.budget.rttMs
    if (rtt === undefined || rtt < MIN_RTT_MS) return
    const now = this.budget.now()
    const elapsed = now - this.epochStart
    if (elapsed < rtt) return
    const consumed = this.received - buffered
    const moved = consumed - this.epochConsumed
    this.epochStart = now
    this.epochConsumed = consumed
    // A lagging consumer is the bottleneck, not the window: what it took says nothing about the path.
    if (buffered >= hwm / 2) return
    const b = this.budget
    let next = nextTarget(this.target, moved, elapsed, rtt, b.maxWindow, BASE_WINDOW, WINDOW_HEADROOM)
    if (next > this.target) next = Math.min(next, this.target + Math.max(0, b.maxExtraTotal - b.extraReserved))
    if (next === this.target) return
    if (next > this.target) b.growths++
    b.extraReserved += next - this.target
    this.target = next
  }
}
