/**
 * The compact live status line a foreground instance keeps at the bottom of a terminal:
 *
 *     up 3m12s · 2 active · 1.2 MB ↑ 34 MB ↓ · dns 120 q (80% cache)
 *
 * It is rewritten in place (`\r` + "erase line") and must never be interleaved with log
 * output, so the logger's writer goes through wrapWrite(): erase, print the log line, redraw.
 * It never writes a newline of its own, and it stays shorter than the terminal: a wrapped
 * line could no longer be erased with `\r`.
 */
import { humanBytes, humanDuration } from './status-format'
import type { StatusSnapshot } from './status-types'

/** ECMA-48: carriage return, then "erase entire line" (CSI 2 K). */
const ERASE = '\r\x1b[2K'

/** What we need of a stream (process.stderr, or a fake in tests). */
export interface StatusLineStream {
  readonly isTTY?: boolean
  readonly columns?: number
  write(s: string): boolean
}

export interface StatusLineOptions {
  readonly stream: StatusLineStream
  readonly snapshot: () => StatusSnapshot | Promise<StatusSnapshot>
  /** Default 1000 ms. */
  readonly intervalMs?: number
}

/** The line's text for a snapshot (no escapes, no truncation). */
export function statusLineText(s: StatusSnapshot): string {
  const parts: string[] = []
  const notUp = s.remotes.filter((r) => r.state !== 'up')
  for (const r of notUp) parts.push(`${r.name} ${r.state === 'connecting' ? 'reconnecting' : r.state}`)
  parts.push(`up ${humanDuration(s.uptimeS)}`)
  parts.push(`${s.totals.active} active`)
  parts.push(`${humanBytes(s.totals.bytesUp)} ↑ ${humanBytes(s.totals.bytesDown)} ↓`)
  if (s.dns) {
    const pct = s.dns.queries > 0 ? Math.round((100 * s.dns.cacheHits) / s.dns.queries) : 0
    parts.push(`dns ${s.dns.queries} q (${pct}% cache)`)
  }
  return parts.join(' · ')
}

/**
 * Keeps the status line drawn until stop(). Does nothing at all when the stream is not a TTY
 * (pipes, files, -f): there is nobody to look at it and escapes would pollute logs.
 */
export class StatusLine {
  /** False when the stream is not a terminal: every method is then a no-op. */
  readonly active: boolean
  private timer: NodeJS.Timeout | undefined
  private text = ''
  private drawn = false
  private paused = 0
  private stopped = false

  constructor(private readonly opts: StatusLineOptions) {
    this.active = opts.stream.isTTY === true
    if (!this.active) return
    this.timer = setInterval(() => this.refresh(), opts.intervalMs ?? 1000)
    this.timer.unref() // never the reason the process stays alive
    this.refresh()
  }

  /** Erases the line (if drawn); the cursor is left at column 0 for whatever comes next. */
  clear(): void {
    if (!this.active || !this.drawn) return
    this.opts.stream.write(ERASE)
    this.drawn = false
  }

  /** Draws the last known text again (after a log line, for instance). */
  redraw(): void {
    if (!this.active || this.stopped || this.paused > 0 || this.text === '') return
    const cols = this.opts.stream.columns ?? 80
    this.opts.stream.write(ERASE + truncate(this.text, Math.max(1, cols - 1)))
    this.drawn = true
  }

  /** A writer for createLogger({ write }): erase, write the line, redraw. */
  wrapWrite(write: (line: string) => void): (line: string) => void {
    return (line) => {
      if (!this.active) return write(line)
      this.clear()
      this.paused++
      try {
        write(line)
      } finally {
        this.paused--
        this.redraw()
      }
    }
  }

  /** Erases the line and stops refreshing. Safe to call twice. */
  stop(): void {
    if (this.stopped) return
    this.clear()
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  private refresh(): void {
    let s: StatusSnapshot | Promise<StatusSnapshot>
    try {
      s = this.opts.snapshot()
    } catch {
      return // a status line is not worth an exception
    }
    Promise.resolve(s).then(
      (snap) => {
        if (this.stopped) return
        this.text = statusLineText(snap)
        this.redraw()
      },
      () => {},
    )
  }
}

/** Cuts to at most max code points (the arrows and dots are one column each). */
function truncate(s: string, max: number): string {
  const chars = [...s]
  return chars.length <= max ? s : chars.slice(0, max - 1).join('') + '…'
}
