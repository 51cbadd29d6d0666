/**
 * Resume after suspend, noticed without any OS notification: the monotonic clock Node uses
 * (performance.now: CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS) stops while the
 * machine sleeps, clocks that count real time do not. A timer compares both every interval;
 * when real time advanced more than the monotonic clock by over the threshold, the machine was
 * asleep that long. NAT and firewall state on the way to the bastion has likely expired and the
 * server may have dropped us: reconnect instead of waiting for keepalive to find out.
 *
 * The real-time side is, on Linux, CLOCK_BOOTTIME (/proc/uptime counts suspended time): unlike
 * the wall clock it never steps, so an NTP correction or a user setting the date is not taken
 * for a suspend. Elsewhere (and where /proc/uptime cannot be read) Date.now(): a wall-clock
 * step forward then reads as a resume, which costs one needless reconnect.
 *
 * A blocked event loop (GC, a long sync call) delays the timer but advances both clocks alike:
 * no false resume.
 */
import * as fs from 'node:fs'

export interface Clocks {
  /** Milliseconds, not advancing during suspend. */
  mono(): number
  /** Milliseconds, advancing during suspend. */
  real(): number
}

export interface ClockJumpOptions {
  /** How often to compare (default 2 s): a resume is noticed at most this late. */
  readonly intervalMs?: number
  /** Smallest gap reported (default 4 s): well above timer jitter and /proc/uptime's 10 ms. */
  readonly thresholdMs?: number
  readonly clocks?: Clocks
  readonly onJump: (sleptMs: number) => void
}

/** CLOCK_BOOTTIME in ms through /proc/uptime, or undefined where that file is not readable. */
export function bootTimeClock(file = '/proc/uptime'): (() => number) | undefined {
  const read = (): number => {
    const s = fs.readFileSync(file, 'latin1')
    const v = parseFloat(s)
    if (!Number.isFinite(v)) throw new Error(`${file}: unexpected "${s.slice(0, 40)}"`)
    return v * 1000
  }
  try {
    read()
    return read
  } catch {
    return undefined
  }
}

export function defaultClocks(platform: NodeJS.Platform = process.platform): Clocks {
  const boot = platform === 'linux' ? bootTimeClock() : undefined
  return { mono: () => performance.now(), real: boot ?? (() => Date.now()) }
}

/** Watches for suspend/resume; stop() ends it. The timer is unref'd: it never keeps us alive. */
export class ClockJumpDetector {
  private timer: NodeJS.Timeout | undefined
  private lastMono = 0
  private lastReal = 0
  private readonly clocks: Clocks
  private readonly intervalMs: number
  private readonly thresholdMs: number

  constructor(private readonly o: ClockJumpOptions) {
    this.clocks = o.clocks ?? defaultClocks()
    this.intervalMs = o.intervalMs ?? 2000
    this.thresholdMs = o.thresholdMs ?? 4000
  }

  start(): void {
    if (this.timer) return
    this.lastMono = this.clocks.mono()
    this.lastReal = this.clocks.real()
    this.timer = setInterval(() => this.check(), this.intervalMs)
    this.timer.unref()
  }

  /** One comparison (the timer's tick; public so a caller can check at once, e.g. on SIGCONT). */
  check(): void {
    const mono = this.clocks.mono()
    const real = this.clocks.real()
    const slept = real - this.lastReal - (mono - this.lastMono)
    this.lastMono = mono
    this.lastReal = real
    // Negative: the real clock went back (only Date.now can): not a suspend.
    if (slept > this.thresholdMs) this.o.onJump(Math.round(slept))
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }
}
