/**
 * Client side of the privileged helper: starts it (directly as root, else through sudo), waits
 * for its ready line, and turns requests into promises. If the helper dies while we did not ask
 * it to (close()), onExit listeners are told: the CLI must then stop, since nothing would
 * remove the rules any more... except the helper itself, which reverted on its way out.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as os from 'node:os'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import type { CleanupReport } from './cleanup'
import { sudoFailureReason } from './sudo-failure'
import type { LearnResult } from './helper-learn'
import type { ApplyResult, RevertResult } from './helper-server'
import type { NatLookAnswer, NatLookQuery } from '../os/pf-natlook'
import { helperEnv, helperLaunchArgv, helperScriptPath, needRootHint, packageRootOf, type HelperLaunch } from './helper-launch'
import { checkInstallSafety, realSafetyFs, type SafetyVerdict } from './install-safety'
import type { GuardSpec } from '../firewall/fail-closed'
import { type HelperEvent, type HelperResponse, type WireError } from './protocol'
import { guardSpecToWire, LineSplitter, specToWire } from './protocol-wire'
import type { CaptureSpec, MethodName, ProbeOptions, ProbeResult } from '../firewall/types'

/** How the helper ended. `expected` is true after close(). */
export interface HelperExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly expected: boolean
  /** Last lines the helper (or sudo) wrote to stderr. */
  readonly stderr: string
  /** One line for the user: "code 1", "signal SIGKILL" (plus the last stderr line, if any). */
  readonly reason: string
  /** The helper stopped on its own and said it left nothing applied (its `stopped` line). */
  readonly clean: boolean
}

export interface HelperClient {
  readonly pid: number | undefined
  /** What the helper cleaned up when it started. */
  readonly startupCleanup: CleanupReport | null
  probe(method: MethodName, opts?: ProbeOptions): Promise<ProbeResult>
  apply(method: MethodName, spec: CaptureSpec): Promise<ApplyResult>
  revert(): Promise<RevertResult>
  cleanup(): Promise<CleanupReport>
  /** --fail-closed: builds the guard of the applied instance (open). */
  guard(spec: GuardSpec): Promise<{ families: Array<4 | 6> }>
  /** --fail-closed: closes (SSH down) or opens the guard. */
  guardState(closed: boolean): Promise<{ closed: boolean }>
  /** exec --only: moves the command (a child of ours, not yet running it) into the capture's cgroup. */
  cgroupAdd(pid: number): Promise<{ pid: number }>
  /** pf (macOS): the original destination of a redirected connection (DIOCNATLOOK, root only). */
  natlook(q: NatLookQuery): Promise<NatLookAnswer>
  /** --route-by-name: capture these addresses for ttl seconds each (added, or extended). */
  learn(entries: readonly { address: string; ttl: number }[]): Promise<LearnResult>
  /** Ends stdin (the helper reverts and exits) and waits for the exit. */
  close(): Promise<HelperExit>
  /** Called once if the helper exits without close(). */
  onExit(cb: (e: HelperExit) => void): void
}

export interface StartHelperOptions {
  log: Logger
  /** The helper's whole environment; default: helperEnv(process.env), an allow-list. */
  env?: NodeJS.ProcessEnv
  /** Override how the helper is started (tests: `ip netns exec NS node …/helper-main.js`). */
  launch?: HelperLaunch
  /** How long to wait for the ready line; default 20 s, 5 min when sudo may prompt. */
  readyTimeoutMs?: number
  /** Start the helper with the tun grant (--method tun); see tun-grant.ts. */
  allowTun?: boolean
  /** Whether a NOPASSWD rule would be safe (for the NEED_ROOT hint); default: check this install. */
  installSafety?: () => SafetyVerdict
}

/** How startHelper() launches the helper in this process (root directly, else sudo). */
export function defaultHelperLaunch(helperPath: string = helperScriptPath(), allowTun = false): HelperLaunch {
  return helperLaunchArgv({
    uid: process.getuid?.() ?? 0,
    tty: Boolean(process.stdin.isTTY || process.stderr.isTTY),
    execPath: process.execPath,
    helperPath,
    allowTun,
  })
}

/** Checks the running install (node, this package) for a NOPASSWD rule. */
function thisInstallSafety(helperPath: string): SafetyVerdict {
  return checkInstallSafety(
    { execPath: process.execPath, helperPath, packageRoot: packageRootOf(helperPath) },
    realSafetyFs(),
  )
}

/** Starts the privileged helper and resolves once it is ready (stale cleanup done). */
export function startHelper(opts: StartHelperOptions): Promise<HelperClient> {
  const helperPath = helperScriptPath()
  const launch = opts.launch ?? defaultHelperLaunch(helperPath, opts.allowTun === true)
  opts.log.debug('helper', `starting: ${launch.command} ${launch.args.join(' ')}`)
  const child = spawn(launch.command, [...launch.args], { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? helperEnv(process.env) })
  const client = new Client(child, opts.log)
  const timeoutMs = opts.readyTimeoutMs ?? (launch.interactive ? 300_000 : 20_000)
  return client.ready(timeoutMs).then(
    () => client,
    (e: unknown) => {
      child.kill('SIGTERM')
      const safety = opts.installSafety ?? (() => thisInstallSafety(helperPath))
      throw startFailure(e, launch, client.stderrTail(), helperPath, { tun: opts.allowTun === true, safety })
    },
  )
}

interface FailureContext {
  tun: boolean
  safety: () => SafetyVerdict
}

function startFailure(e: unknown, launch: HelperLaunch, stderr: string, helperPath: string, ctx: FailureContext): TunnelError {
  const spawnErr = (e as { spawnError?: NodeJS.ErrnoException }).spawnError
  if (launch.viaSudo) {
    const user = os.userInfo().username
    const why = spawnErr?.code === 'ENOENT' ? 'not root and sudo is not installed' : sudoFailureReason(stderr, launch.interactive, user)
    return new TunnelError('NEED_ROOT', why, {
      hint: needRootHint(user, { execPath: process.execPath, helperPath }, ctx.safety(), ctx.tun),
      cause: e,
    })
  }
  if (e instanceof TunnelError) return e
  return new TunnelError('HELPER', `privileged helper did not start: ${errorMessage(e)}${stderr ? ` (${stderr.trim().split('\n').pop()})` : ''}`, {
    hint: 'rebuild with `npm run build` and check that node can run dist/platform/helper/helper-main.js',
    cause: e,
  })
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void }

class Client implements HelperClient {
  startupCleanup: CleanupReport | null = null
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly exitCbs: Array<(e: HelperExit) => void> = []
  private stderr: string[] = []
  private closing = false
  private exited: HelperExit | undefined
  private stopped: { why: string; clean: boolean } | undefined
  private readonly exitPromise: Promise<HelperExit>
  private readyResolve!: () => void
  private readyReject!: (e: unknown) => void
  private readonly readyPromise = new Promise<void>((res, rej) => {
    this.readyResolve = res
    this.readyReject = rej
  })

  constructor(private readonly child: ChildProcess, private readonly log: Logger) {
    const out = new LineSplitter((l) => this.onLine(l), () => this.log.warn('helper', 'overlong line from helper dropped'), 64 * 1024 * 1024)
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (c: string) => out.push(c))
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (c: string) => {
      for (const line of c.split('\n').filter((x) => x.trim())) {
        this.stderr = [...this.stderr.slice(-19), line]
        this.log.verbose('helper', line)
      }
    })
    // Writing to a helper that just died gives EPIPE; the exit handler reports it instead.
    child.stdin!.on('error', () => {})
    child.on('error', (err) => this.readyReject(Object.assign(new Error(err.message), { spawnError: err })))
    this.exitPromise = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        const stderr = this.stderrTail()
        const last = stderr.split('\n').pop()
        const reason = (signal ? `signal ${signal}` : `code ${code}`) + (last ? `: ${last}` : '')
        const clean = this.stopped?.clean === true
        const e: HelperExit = { code, signal, expected: this.closing, stderr, reason, clean }
        this.exited = e
        this.readyReject(new Error(`helper exited (code ${code}${signal ? `, ${signal}` : ''})`))
        const err = new TunnelError('HELPER', `privileged helper exited (code ${code}${signal ? `, signal ${signal}` : ''})`, {
          hint: 'run with -v to see its output',
        })
        for (const p of this.pending.values()) p.reject(err)
        this.pending.clear()
        if (!e.expected) for (const cb of this.exitCbs) cb(e)
        resolve(e)
      })
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  stderrTail(): string {
    return this.stderr.join('\n')
  }

  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new TunnelError('HELPER', `privileged helper not ready after ${timeoutMs} ms`)), timeoutMs)
    })
    return Promise.race([this.readyPromise, timeout]).finally(() => clearTimeout(timer))
  }

  private onLine(line: string): void {
    let msg: HelperResponse | HelperEvent
    try {
      msg = JSON.parse(line) as HelperResponse | HelperEvent
    } catch {
      this.log.warn('helper', `unparsable line from helper: ${line.slice(0, 200)}`)
      return
    }
    if ('log' in msg) {
      const { level, msg: text } = msg.log
      const fn = (this.log as unknown as Record<string, (t: 'fw', m: string) => void>)[level] ?? this.log.info
      fn('fw', text)
    } else if ('stopped' in msg) {
      this.stopped = msg.stopped
    } else if ('ready' in msg) {
      this.startupCleanup = msg.ready.cleanup as CleanupReport | null
      this.readyResolve()
    } else if ('id' in msg) {
      if (msg.id === null) {
        if (!msg.ok) this.log.warn('helper', `helper rejected a request: ${msg.error.message}`)
        return
      }
      const p = this.pending.get(msg.id)
      if (!p) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(fromWire(msg.error))
    }
  }

  private request<T>(body: Record<string, unknown>): Promise<T> {
    if (this.exited || this.closing) {
      return Promise.reject(new TunnelError('HELPER', 'privileged helper is not running'))
    }
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.stdin!.write(JSON.stringify({ id, ...body }) + '\n')
    })
  }

  probe(method: MethodName, opts: ProbeOptions = {}): Promise<ProbeResult> {
    return this.request({ op: 'probe', method, ...(opts.ipv6 === undefined ? {} : { ipv6: opts.ipv6 }) })
  }

  apply(method: MethodName, spec: CaptureSpec): Promise<ApplyResult> {
    return this.request({ op: 'apply', method, spec: specToWire(spec) })
  }

  revert(): Promise<RevertResult> {
    return this.request<RevertResult>({ op: 'revert' }).catch((e: unknown) => {
      // It stopped on its own first (SIGTERM to the whole group, a hangup) and reverted
      // everything on its way out: nothing is left, so this is not a failure.
      if (this.stopped?.clean) {
        this.log.verbose('helper', `rules already removed by the helper (it stopped: ${this.stopped.why})`)
        return { reverted: true }
      }
      throw e
    })
  }

  cleanup(): Promise<CleanupReport> {
    return this.request({ op: 'cleanup' })
  }

  guard(spec: GuardSpec): Promise<{ families: Array<4 | 6> }> {
    return this.request({ op: 'guard', spec: guardSpecToWire(spec) })
  }

  guardState(closed: boolean): Promise<{ closed: boolean }> {
    return this.request({ op: 'guard-state', closed })
  }

  cgroupAdd(pid: number): Promise<{ pid: number }> {
    return this.request({ op: 'cgroup-add', pid })
  }

  natlook(q: NatLookQuery): Promise<NatLookAnswer> {
    return this.request({ op: 'natlook', src: q.src, dst: q.dst, proto: q.proto })
  }

  learn(entries: readonly { address: string; ttl: number }[]): Promise<LearnResult> {
    return this.request({ op: 'learn', entries: entries.map((e) => ({ address: e.address, ttl: e.ttl })) })
  }

  async close(timeoutMs = 30_000): Promise<HelperExit> {
    if (this.exited) return this.exited
    this.closing = true
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGTERM'), timeoutMs)
    try {
      return await this.exitPromise
    } finally {
      clearTimeout(timer)
    }
  }

  onExit(cb: (e: HelperExit) => void): void {
    this.exitCbs.push(cb)
  }
}

function fromWire(e: WireError): TunnelError {
  return new TunnelError(e.code, e.message, e.hint === undefined ? {} : { hint: e.hint })
}
