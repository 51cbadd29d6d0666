/**
 * The descriptors a neighbour cannot take. Every accepted connection costs one file descriptor,
 * and past the open-files limit the kernel and libuv accept and close new connections silently
 * (Node never sees EMFILE): whoever holds the descriptors decides who is served. Front-ends a
 * neighbour can reach without credentials (the proxies, -L, TCP DNS) ask allows() before
 * keeping a new client; it says no once fewer than `reserve` descriptors are left, so the
 * transparent listener (which never asks), clients already admitted and the SSH pool opening
 * another connection still find descriptors when the proxies are flooded.
 */

/** Smallest reserve: a burst of transparent connections, a new SSH connection, DNS sockets. */
export const RESERVE_MIN = 64
/** Share of the limit held back on larger limits (102 of 1,024; 6,553 of 65,536). */
export const RESERVE_SHARE = 0.1

/** The reserve for a limit: max(64, 10 %), but never more than half, so proxies still work at tiny limits. */
export function reserveFor(limit: number): number {
  return Math.min(Math.floor(limit / 2), Math.max(RESERVE_MIN, Math.ceil(limit * RESERVE_SHARE)))
}

export interface DescriptorReserveOptions {
  /** This process's open-files limit. */
  readonly limit: number
  /** Descriptors open now (readdir /proc/self/fd); undefined when it cannot be known. */
  readonly openCount: () => number | undefined
  /** Descriptors kept back (default reserveFor(limit)). */
  readonly reserve?: number
  /** Clock (tests). */
  readonly now?: () => number
}

/**
 * Counting open descriptors means listing /proc/self/fd: ~1.5 µs per descriptor (15 ms at
 * 10,000), too slow for every accept. So the count is sampled — every SAMPLE_NEAR_MS when
 * close to the reserve, every SAMPLE_FAR_MS otherwise, and never more often than 20× the last
 * listing took (at most 5 % of a core) — and the admissions made since the last sample are
 * added to it, so a burst of proxy clients between two samples cannot overshoot.
 */
const SAMPLE_NEAR_MS = 100
const SAMPLE_FAR_MS = 1_000

export class DescriptorReserve {
  readonly limit: number
  readonly reserve: number
  private readonly now: () => number
  private sampledOpen: number | undefined
  private sampledAt = -Infinity
  private nextSampleAfterMs = 0
  private admittedSince = 0

  constructor(private readonly opts: DescriptorReserveOptions) {
    this.limit = opts.limit
    this.reserve = opts.reserve ?? reserveFor(opts.limit)
    this.now = opts.now ?? Date.now
  }

  /** Estimated descriptors still free (undefined when the count is unknown). */
  free(): number | undefined {
    const t = this.now()
    if (t - this.sampledAt >= this.nextSampleAfterMs) {
      const started = performance.now()
      this.sampledOpen = this.opts.openCount()
      const took = performance.now() - started
      this.sampledAt = t
      this.admittedSince = 0
      const far = this.sampledOpen !== undefined && this.limit - this.sampledOpen > 2 * this.reserve
      this.nextSampleAfterMs = Math.max(far ? SAMPLE_FAR_MS : SAMPLE_NEAR_MS, 20 * took)
    }
    if (this.sampledOpen === undefined) return undefined
    return this.limit - this.sampledOpen - this.admittedSince
  }

  /** True while at least `reserve` descriptors are free (or the count is unknown). */
  allows(): boolean {
    const f = this.free()
    return f === undefined || f >= this.reserve
  }

  /** Counts a client just admitted, until the next sample sees it. */
  taken(): void {
    this.admittedSince++
  }
}
