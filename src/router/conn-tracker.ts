import type { ConnMeta, Destination } from './types'

/** One connection as shown by status and logs. */
export interface TrackedConn {
  readonly meta: ConnMeta
  readonly dst: Destination
  readonly startedAt: number
}

/** Totals since start. */
export interface ConnTotals {
  active: number
  total: number
  failed: number
  bytesUp: number
  bytesDown: number
}

/**
 * Counts connections and bytes for status output. O(1) per event and no timers: an idle
 * connection costs one Map entry, nothing that grows with time.
 */
export class ConnTracker {
  private seq = 0
  private readonly live = new Map<number, TrackedConn>()
  readonly totals: ConnTotals = { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 }

  nextId(): number {
    return ++this.seq
  }

  open(meta: ConnMeta, dst: Destination): TrackedConn {
    const c: TrackedConn = { meta, dst, startedAt: Date.now() }
    this.live.set(meta.id, c)
    this.totals.active++
    this.totals.total++
    return c
  }

  close(c: TrackedConn, bytesUp: number, bytesDown: number, error?: string): void {
    if (!this.live.delete(c.meta.id)) return
    this.totals.active--
    this.totals.bytesUp += bytesUp
    this.totals.bytesDown += bytesDown
    if (error !== undefined) this.totals.failed++
  }

  active(): TrackedConn[] {
    return [...this.live.values()]
  }
}
