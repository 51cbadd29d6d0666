/**
 * NetWatcher: tells the tunnel at once when the path to the bastion may have changed, so it can
 * redial instead of waiting up to a keepalive timeout (45 s by default) to notice.
 *
 *   kernel notifications ─▶ monitor process (ip monitor | route monitor, as the user)
 *     ─▶ parser (ip-monitor.ts | route-monitor-darwin.ts) ─▶ NetEvent
 *     ─▶ relevance (net-relevance.ts): none | soft | hard
 *     ─▶ burst window (debounceMs from the first relevant event; a link flap is 10–20 lines)
 *     ─▶ route lookup (net-path.ts) ─▶ 'changed' when the path differs or broke
 *   clock comparison (clock-jump.ts) ─▶ 'resume' after a suspend
 *
 * Events:
 *   'changed' (PathChange)  the route to the bastion is different (other interface, gateway or
 *                           source address, gone, back) or broke (carrier lost, link down/up,
 *                           source address removed). `after.up` false or `after` undefined: there
 *                           is no usable path right now; another 'changed' follows when there is.
 *   'resume'  (ResumeInfo)  the machine was suspended; the connection is suspect.
 *   'warning' (TunnelError) the monitor cannot run (then only 'resume' and keepalive remain).
 * The watcher never emits 'error': nothing here may take the tunnel down.
 */
import { EventEmitter } from 'node:events'
import { TunnelError, errorMessage } from '../../errors'
import { silentLogger, type Logger } from '../../observe/logger'
import { ClockJumpDetector, type Clocks } from './clock-jump'
import { IP_MONITOR_ARGV, parseIpMonitorLine } from './ip-monitor'
import { startMonitorProcess, type MonitorProcess, type MonitorProcessOptions } from './monitor-process'
import type { BastionPath, LinkState, NetEvent } from './net-events'
import { describePath, ipFamily, samePath } from './net-events'
import { defaultPathQuery, type PathQuery } from './net-path'
import { classifyNetEvent, type RelevanceContext } from './net-relevance'
import { DarwinRouteMonitorParser, ROUTE_MONITOR_ARGV } from './route-monitor-darwin'

export interface PathChange {
  readonly before: BastionPath | undefined
  readonly after: BastionPath | undefined
  /** What was seen, in order (capped), e.g. "link eth0 lost carrier". */
  readonly reasons: readonly string[]
  /** The old path broke (carrier, link, source address) even if the lookup answers the same. */
  readonly broken: boolean
  /** performance.now() at the first relevant notification of the burst. */
  readonly firstEventAt: number
}

export interface ResumeInfo {
  readonly sleptMs: number
}

export interface NetWatcherEvents {
  changed: [PathChange]
  resume: [ResumeInfo]
  warning: [TunnelError]
}

export interface NetWatcherOptions {
  /** The bastion's IP address: the SSH connection's peer (the first hop with ProxyJump). */
  readonly bastion: string
  readonly platform?: NodeJS.Platform
  /** Burst window from the first relevant notification to the route lookup (default 100 ms). */
  readonly debounceMs?: number
  /** Our own devices (the tun backend's device): their routes never matter. */
  readonly ignoreDevs?: Iterable<string>
  /** Our own routing tables (the tun backend's policy table), as `ip` prints them (decimal). */
  readonly ignoreTables?: Iterable<string>
  /** Suspend detection; false turns it off. */
  readonly resume?: false | { readonly intervalMs?: number; readonly thresholdMs?: number; readonly clocks?: Clocks }
  readonly log?: Logger
  /** Seams for tests: the monitor process, its parser, the route lookup. */
  readonly startMonitor?: (o: Pick<MonitorProcessOptions, 'onLine' | 'onGap' | 'onFatal'>) => MonitorProcess
  readonly parser?: () => (line: string) => NetEvent[]
  readonly query?: PathQuery
}

const MAX_REASONS = 20

interface Batch {
  reasons: string[]
  hard: boolean
  gap: boolean
  firstAt: number
}

export class NetWatcher extends EventEmitter<NetWatcherEvents> {
  private bastion: string
  private family: 4 | 6
  private current: BastionPath | undefined
  private readonly links = new Map<number, LinkState>()
  private readonly log: Logger
  private readonly debounceMs: number
  private readonly ignoreDevs: ReadonlySet<string>
  private readonly ignoreTables: ReadonlySet<string>
  private readonly query: PathQuery | undefined
  private monitor: MonitorProcess | undefined
  private clock: ClockJumpDetector | undefined
  private pending: Batch | undefined
  private timer: NodeJS.Timeout | undefined
  private checking = false
  private stopped = false

  constructor(private readonly o: NetWatcherOptions) {
    super()
    this.bastion = o.bastion
    this.family = familyOf(o.bastion)
    this.log = o.log ?? silentLogger
    this.debounceMs = o.debounceMs ?? 100
    this.ignoreDevs = new Set(o.ignoreDevs ?? [])
    this.ignoreTables = new Set(o.ignoreTables ?? [])
    this.query = o.query ?? defaultPathQuery(o.platform ?? process.platform)
  }

  /** The path as last looked up (undefined: no route, or not looked up yet). */
  get path(): BastionPath | undefined {
    return this.current
  }

  /** Starts the monitor and the suspend detector, then looks the path up once. */
  async start(): Promise<void> {
    const platform = this.o.platform ?? process.platform
    const parse = this.o.parser?.() ?? defaultParser(platform)
    const argv = platform === 'linux' ? IP_MONITOR_ARGV : platform === 'darwin' ? ROUTE_MONITOR_ARGV : undefined
    const handlers: Pick<MonitorProcessOptions, 'onLine' | 'onGap' | 'onFatal'> = {
      onLine: (line) => {
        for (const ev of parse(line)) this.onEvent(ev)
      },
      onGap: (why) => this.onEvent({ kind: 'gap', why }),
      onFatal: (err) => this.warn(err),
    }
    if (this.o.startMonitor) this.monitor = this.o.startMonitor(handlers)
    else if (argv) this.monitor = startMonitorProcess({ argv, ...handlers })
    else this.warn(new TunnelError('FW_UNSUPPORTED', `watching for network changes is not supported on ${platform}`))
    if (this.o.resume !== false) {
      this.clock = new ClockJumpDetector({ ...this.o.resume, onJump: (ms) => this.onResume(ms) })
      this.clock.start()
    }
    await this.refresh()
  }

  /**
   * The tunnel now talks to another address (a reconnect resolved the name anew): watch the
   * path to that one. Looks it up without emitting 'changed'.
   */
  async setBastion(address: string): Promise<void> {
    this.family = familyOf(address)
    this.bastion = address
    await this.refresh()
  }

  /** Looks the path up and records it, without emitting 'changed'. */
  async refresh(): Promise<void> {
    if (!this.query || this.stopped) return
    try {
      const snap = await this.query(this.bastion)
      this.current = snap.path
      for (const l of snap.links) this.links.set(l.index, l)
      this.log.verbose('route', `path to ${this.bastion}: ${describePath(snap.path)}`)
    } catch (e) {
      this.warn(asTunnelError(e))
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.clock?.stop()
    await this.monitor?.stop()
  }

  /** pid of the monitor process, for diagnostics and tests. */
  monitorPid(): number | undefined {
    return this.monitor?.pid()
  }

  private context(): RelevanceContext {
    return { bastion: this.bastion, family: this.family, path: this.current, links: this.links, ignoreDevs: this.ignoreDevs, ignoreTables: this.ignoreTables }
  }

  private onEvent(ev: NetEvent): void {
    if (this.stopped) return
    const rel = classifyNetEvent(ev, this.context())
    if (ev.kind === 'link') {
      if (ev.deleted) this.links.delete(ev.index)
      else this.links.set(ev.index, { index: ev.index, name: ev.name ?? this.links.get(ev.index)?.name, up: ev.up, running: ev.running })
    }
    if (rel.level === 'none') return
    const b = (this.pending ??= { reasons: [], hard: false, gap: false, firstAt: performance.now() })
    if (b.reasons.length < MAX_REASONS) b.reasons.push(rel.reason)
    b.hard ||= rel.level === 'hard'
    b.gap ||= ev.kind === 'gap'
    this.schedule()
  }

  private schedule(): void {
    if (this.timer || this.checking || !this.pending || this.stopped) return
    this.timer = setTimeout(() => void this.flush(), this.debounceMs)
  }

  private async flush(): Promise<void> {
    this.timer = undefined
    const batch = this.pending
    this.pending = undefined
    if (!batch || !this.query) return
    this.checking = true
    const before = this.current
    let after = before
    try {
      const snap = await this.query(this.bastion)
      after = snap.path
      // Link events are fresher than a lookup that ran alongside them; after a gap the lookup
      // is all we have.
      if (batch.gap) this.links.clear()
      for (const l of snap.links) if (batch.gap || !this.links.has(l.index)) this.links.set(l.index, l)
      this.current = after
    } catch (e) {
      this.warn(asTunnelError(e))
    }
    this.checking = false
    if (this.stopped) return
    if (batch.hard || !samePath(before, after)) {
      this.log.info('route', `network change (${batch.reasons.slice(0, 3).join('; ')}): ${describePath(before)} → ${describePath(after)}`)
      this.emit('changed', { before, after, reasons: batch.reasons, broken: batch.hard, firstEventAt: batch.firstAt })
    } else {
      this.log.debug('route', `checked after ${batch.reasons[0]}: path unchanged (${describePath(after)})`)
    }
    this.schedule()
  }

  private onResume(sleptMs: number): void {
    if (this.stopped) return
    this.log.info('route', `resumed after ~${Math.round(sleptMs / 1000)} s of suspend`)
    this.emit('resume', { sleptMs })
    void this.refresh()
  }

  private warn(err: TunnelError): void {
    this.log.warn('route', `${err.message}${err.hint ? ` (${err.hint})` : ''}`)
    this.emit('warning', err)
  }
}

function familyOf(address: string): 4 | 6 {
  const f = ipFamily(address)
  if (!f) throw new TunnelError('INTERNAL', `net watch: "${address}" is not an IP address`)
  return f
}

function defaultParser(platform: NodeJS.Platform): (line: string) => NetEvent[] {
  if (platform === 'darwin') {
    const p = new DarwinRouteMonitorParser()
    return (line) => p.push(line)
  }
  return (line) => {
    const ev = parseIpMonitorLine(line)
    return ev ? [ev] : []
  }
}

function asTunnelError(e: unknown): TunnelError {
  return e instanceof TunnelError ? e : new TunnelError('FW_UNSUPPORTED', `net watch: ${errorMessage(e)}`, { cause: e })
}
