import type { ConnMeta, Destination } from './types'

/** One connection as shown by status, logs and the audit log. Byte counts are live. */
export interface TrackedConn {
  readonly meta: ConnMeta
  readonly dst: Destination
  readonly startedAt: number
  bytesUp: number
  bytesDown: number
}

/** How a connection ended: undefined error = clean close. */
export interface ConnEnd {
  readonly error?: string
  readonly endedAt: number
}

/** Totals since start. */
export interface ConnTotals {
  active: number
  total: number
  failed: number
  bytesUp: number
  bytesDown: number
}

/** Observers of connection life cycles (audit log, status line). Must not throw. */
export interface ConnObserver {
  opened?(c: TrackedConn): void
  closed?(c: TrackedConn, end: ConnEnd): void
}

/**
 * Counts connections and bytes for status output and notifies observers. O(1) per event and
 * no timers: an idle connection costs one Map entry, nothing that grows with time.
 */
export class ConnTracker {
  private seq = 0
  private readonly live = new Map<number, TrackedConn>()
  private readonly observers: ConnObserver[] = []
  readonly totals: ConnTotals = { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 }

  nextId(): number {
    return ++this.seq
  }

  observe(o: ConnObserver): void {
    this.observers.push(o)
  }

  open(meta: ConnMeta, dst: Destination): TrackedConn {
    const c: TrackedConn = { meta, dst, startedAt: Date.now(), bytesUp: 0, bytesDown: 0 }
    this.live.set(meta.id, c)
    this.totals.active++
    this.totals.total++
    for (const o of this.observers) o.opened?.(c)
    return c
  }

  /** Ends a connection; byte counts are the ones accumulated on c (see pipeBoth's counters). */
  close(c: TrackedConn, error?: string): void {
    if (!this.live.delete(c.meta.id)) return
    this.totals.active--
    this.totals.bytesUp += c.bytesUp
    this.totals.bytesDown += c.bytesDown
    if (error !== undefined) this.totals.failed++
    const end: ConnEnd = { error, endedAt: Date.now() }
    for (const o of this.observers) o.closed?.(c, end)
  }

  active(): TrackedConn[] {
    return [...this.live.values()]
  }
}
