/**
 * A long-running, unprivileged reader process (`ip monitor`, `route monitor`) whose stdout
 * lines we consume: started as the user with a minimal environment, restarted with backoff when
 * it dies, given up after it keeps dying at start, and stopped with us — on Linux it runs under
 * `setpriv --pdeathsig SIGTERM` when setpriv exists (like the external TUN engines), so even a
 * SIGKILLed tunnel leaves no monitor behind; elsewhere it dies of EPIPE/EOF soon after.
 *
 * Its handles are unref'd, like the suspend timer: the watcher never keeps the process alive.
 *
 * Every (re)start is reported through onGap: notifications sent while no reader was subscribed
 * are lost, so the consumer re-checks the route. stderr lines are gaps too: `ip monitor` prints
 * "netlink receive error … (105)" when the kernel dropped notifications (ENOBUFS) and goes on.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../../errors'

/** Longest line kept; longer ones (never printed by our monitors) are dropped as a gap. */
export const MAX_LINE = 16 * 1024
/** Exits within FAST_EXIT_MS of the start, this many in a row, and the monitor is given up. */
export const MONITOR_START_FAILURES = 5
const FAST_EXIT_MS = 2000

export interface MonitorProcessOptions {
  /** Program and arguments, e.g. IP_MONITOR_ARGV. */
  readonly argv: readonly string[]
  readonly onLine: (line: string) => void
  /** The reader was (re)started or reported an error: notifications may have been missed. */
  readonly onGap: (why: string) => void
  /** Called once when the monitor keeps failing at start; no further restarts. */
  readonly onFatal: (err: TunnelError) => void
  /** Restart delays: first, and cap (default 250 ms doubling to 30 s). */
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number }
  /** Argv prefix (default: setpriv --pdeathsig SIGTERM -- on Linux when setpriv exists). */
  readonly wrap?: readonly string[]
  /** Environment (default: PATH and LC_ALL=C only: stable output, nothing secret inherited). */
  readonly env?: NodeJS.ProcessEnv
}

export interface MonitorProcess {
  /** pid of the running reader (not of the setpriv wrapper: setpriv execs it). */
  pid(): number | undefined
  restarts(): number
  stop(): Promise<void>
}

export function defaultMonitorWrap(platform: NodeJS.Platform = process.platform, envPath = process.env.PATH ?? ''): string[] {
  if (platform !== 'linux') return []
  for (const dir of envPath.split(':').concat(['/usr/bin', '/bin'])) {
    const p = path.join(dir || '.', 'setpriv')
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return [p, '--pdeathsig', 'SIGTERM', '--']
    } catch {
      // next
    }
  }
  return []
}

/** Splits a byte stream into lines, bounded: a runaway line is dropped, not buffered. */
export function lineSplitter(onLine: (line: string) => void, onOverflow: () => void): (chunk: Buffer) => void {
  let buf = ''
  let skipping = false
  return (chunk) => {
    buf += chunk.toString('utf8')
    for (;;) {
      const nl = buf.indexOf('\n')
      if (nl < 0) break
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (skipping) skipping = false
      else onLine(line)
    }
    if (buf.length > MAX_LINE) {
      buf = ''
      if (!skipping) onOverflow()
      skipping = true
    }
  }
}

export function startMonitorProcess(o: MonitorProcessOptions): MonitorProcess {
  const wrap = o.wrap ?? defaultMonitorWrap()
  const env = o.env ?? { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' }
  const backoff = o.backoff ?? { firstMs: 250, maxMs: 30_000 }
  const name = path.basename(o.argv[0])
  let child: ChildProcess | undefined
  let stopping = false
  let restarts = 0
  let fastFailures = 0
  let delay = backoff.firstMs
  let timer: NodeJS.Timeout | undefined
  let lastErr = ''

  const run = (): void => {
    const argv = [...wrap, ...o.argv]
    const startedAt = Date.now()
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env })
    child = c
    // A watcher never keeps the process alive: the tunnel's own sockets and timers do. (If we
    // exit without stop(), the reader gets SIGTERM from pdeathsig or EPIPE on its next write.)
    c.unref()
    for (const s of [c.stdout, c.stderr]) (s as unknown as { unref?: () => void }).unref?.()
    c.stdout!.on('data', lineSplitter(o.onLine, () => o.onGap(`${name}: overlong line dropped`)))
    c.stderr!.on('data', lineSplitter((l) => {
      if (!l.trim()) return
      lastErr = l.trim().slice(0, 300)
      o.onGap(`${name}: ${lastErr}`)
    }, () => {}))
    c.on('error', (e) => (lastErr = errorMessage(e)))
    c.on('close', (code, signal) => {
      if (child === c) child = undefined
      if (stopping) return
      const fast = Date.now() - startedAt < FAST_EXIT_MS
      fastFailures = fast ? fastFailures + 1 : 0
      if (!fast) delay = backoff.firstMs
      const how = signal ? `signal ${signal}` : `code ${code}`
      if (fastFailures >= MONITOR_START_FAILURES) {
        o.onFatal(new TunnelError('FW_UNSUPPORTED', `${name} monitor exited at start ${fastFailures} times (${how}): ${lastErr || 'no output'}`, {
          hint: `network changes are then noticed only by SSH keepalive; check that \`${o.argv.join(' ')}\` runs as this user`,
        }))
        return
      }
      timer = setTimeout(() => {
        timer = undefined
        restarts++
        run()
        o.onGap(`${name} monitor restarted after it exited (${how})`)
      }, delay)
      delay = Math.min(delay * 2, backoff.maxMs)
    })
  }
  run()

  return {
    pid: () => child?.pid,
    restarts: () => restarts,
    async stop() {
      stopping = true
      if (timer) clearTimeout(timer)
      const c = child
      if (c && c.exitCode === null && c.signalCode === null) {
        const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
        c.kill('SIGTERM')
        const kill = setTimeout(() => c.kill('SIGKILL'), 2000)
        await closed
        clearTimeout(kill)
      }
    },
  }
}
