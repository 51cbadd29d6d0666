/**
 * The privileged helper's logic, free of process plumbing so it can be tested in-process with a
 * fake executor: validated requests in, responses out, at most one applied plan at a time, and
 * an idempotent revert. helper-main.ts wires it to stdin/stdout and signals.
 */
import { TunnelError, errorMessage } from '../errors'
import { applyPlan, revertSteps } from './executor'
import { scopeRecord } from './capture-scope'
import { cleanupStale, type CleanupReport } from './cleanup'
import { currentNetns, processStartTime, type Journal, type JournalEntry } from './journal'
import { firewallFor } from './choose-method'
import { conntrackFlushArgv } from './dns-capture'
import { includedFamilies, objectName } from './naming'
import { applyPfPlan, isPfReleaseStep, pfRevert } from './pf'
import { defaultNatLook, type NatLookFn } from './pf-device'
import type { NatLookAnswer } from './pf-natlook'
import { rpFilterAll, tunDeviceName, tunTableInUse, tunTable } from './tun'
import { checkTunGrant } from './tun-grant'
import { BadRequest, parseRequest, toWireError, type HelperRequest, type HelperResponse, type LogLevel } from './protocol'
import type { CaptureSpec, Executor, MethodName, Plan } from './types'

export interface HelperServerOptions {
  exec: Executor
  journal: Journal
  log?: (level: LogLevel, msg: string) => void
  /** Overridable for tests; default: this process. */
  netns?: number
  pid?: number
  mainPid?: number
  isAlive?: (pid: number, startTime: string) => boolean
  /** pf's original-destination lookup (DIOCNATLOOK); default: /dev/pf on macOS, unsupported elsewhere. */
  natlook?: NatLookFn
  /**
   * The uid that started us through sudo (SUDO_UID), if any. tun: the device may then only be
   * given to that uid or to root, so a sudoers rule for the helper cannot be used to hand
   * the traffic of the tunnelled networks to a third user; --owner-only likewise names only
   * that uid or root.
   */
  callerUid?: number
  /** Started with --allow-tun: method tun is granted (see tun-grant.ts). */
  allowTun?: boolean
}

/** Result of a successful apply. */
export interface ApplyResult {
  method: MethodName
  /** `subnet-tunnel-<id>`: the chain (nat), table (nft) or anchor (pf); tun: the device `st<id>`. */
  object: string
  families: Array<4 | 6>
  steps: number
}

/** Result of a revert: false when nothing was applied (revert is idempotent). */
export interface RevertResult {
  reverted: boolean
}

interface Applied {
  id: string
  method: MethodName
  plan: Plan
  /** conntrack deletions to run after apply and after revert (DNS flows). */
  flush: string[][]
  /** pf: the ports our rdr rules redirect to; natlook answers only for these. */
  natPorts: number[]
}

export class HelperServer {
  private applied: Applied | undefined
  /** Requests run one at a time, in order: an apply and a revert must never interleave. */
  private queue: Promise<unknown> = Promise.resolve()
  private readonly log: (level: LogLevel, msg: string) => void
  /** pf lookups: created on first use (opens /dev/pf lazily). */
  private natlookFn: NatLookFn | undefined

  constructor(private readonly opts: HelperServerOptions) {
    this.log = opts.log ?? (() => {})
  }

  /** Whether rules are currently in place. */
  get isApplied(): boolean {
    return this.applied !== undefined
  }

  /** Handles one request line; never throws (errors become responses). */
  handleLine(line: string): Promise<HelperResponse> {
    let req: HelperRequest
    try {
      req = parseRequest(line)
    } catch (e) {
      const id = e instanceof BadRequest ? e.id : null
      return Promise.resolve({ id, ok: false, error: toWireError(e) })
    }
    // Lookups are read-only and on every connection's path: they never queue behind an apply.
    if (req.op === 'natlook') {
      return this.natlook(req).then(
        (result): HelperResponse => ({ id: req.id, ok: true, result }),
        (e: unknown): HelperResponse => ({ id: req.id, ok: false, error: toWireError(e) }),
      )
    }
    return this.serial(async () => {
      try {
        return { id: req.id, ok: true, result: await this.dispatch(req) } as HelperResponse
      } catch (e) {
        return { id: req.id, ok: false, error: toWireError(e) } as HelperResponse
      }
    })
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  private dispatch(req: HelperRequest): Promise<unknown> {
    switch (req.op) {
      case 'probe':
        return firewallFor(req.method).probe(this.opts.exec, { ipv6: req.ipv6 })
      case 'apply':
        return this.apply(req.method, req.spec)
      case 'revert':
        return this.revertNow()
      case 'cleanup':
        return this.cleanup()
      case 'natlook':
        return this.natlook(req)
    }
  }

  /**
   * pf: the original destination of a connection our rdr rules sent to our listener (or DNS
   * interceptor). Refused unless pf rules are applied and dst is one of their redirect ports:
   * the caller may learn where its own redirected connections were going, nothing else.
   */
  private async natlook(req: Extract<HelperRequest, { op: 'natlook' }>): Promise<NatLookAnswer> {
    const a = this.applied
    if (!a || a.method !== 'pf') throw new TunnelError('HELPER', 'natlook: no pf rules are applied')
    if (!a.natPorts.includes(req.dst.port)) {
      throw new TunnelError('HELPER', `natlook: port ${req.dst.port} is not a redirect target of ${objectName(a.id)}`)
    }
    this.natlookFn ??= this.opts.natlook ?? defaultNatLook()
    return this.natlookFn({ src: req.src, dst: req.dst, proto: req.proto })
  }

  /** Runs stale cleanup for this namespace (also at start). */
  cleanup(): Promise<CleanupReport> {
    return cleanupStale(this.opts.exec, {
      journal: this.opts.journal,
      netns: this.opts.netns,
      isAlive: this.opts.isAlive,
    })
  }

  private async apply(method: MethodName, spec: CaptureSpec): Promise<ApplyResult> {
    if (this.applied) {
      throw new TunnelError('HELPER', `rules of instance ${this.applied.id} are already applied`, {
        hint: 'revert before applying again',
      })
    }
    const plan = firewallFor(method).plan(spec)
    const families = includedFamilies(spec)
    this.checkOwner(spec.ownerUid, '--owner-only: capture may only be limited to')
    if (method === 'tun') this.checkTunRequest(spec)
    const pid = this.opts.pid ?? process.pid
    // Journal first, with the full revert list: if we are killed half-way, cleanup still knows.
    const entry = {
      id: spec.instanceId,
      helperPid: pid,
      helperStart: processStartTime(pid) ?? '',
      mainPid: this.opts.mainPid ?? process.ppid,
      netns: this.opts.netns ?? currentNetns(),
      method,
      families,
      ...scopeRecord(spec),
      revert: plan.revert,
      createdAt: new Date().toISOString(),
    }
    // An id that already has a journal entry belongs to another instance (maybe another user's,
    // maybe in another netns: /run is shared). Applying it anyway would overwrite that entry,
    // and the failed `-N`/`create table` would run our revert list — deleting ITS rules. The
    // exclusive create refuses it before anything runs, even when two helpers race for the id.
    this.opts.journal.create(entry)
    try {
      if (method === 'tun') await this.checkTun(spec, families)
    } catch (e) {
      this.opts.journal.remove(spec.instanceId)
      throw e
    }
    let applied = plan
    try {
      if (method === 'pf') applied = await this.applyPf(spec.instanceId, plan, entry)
      else await applyPlan(this.opts.exec, plan)
    } catch (e) {
      // applyPlan already ran the revert list; the entry is no longer needed.
      this.opts.journal.remove(spec.instanceId)
      throw e instanceof TunnelError ? e.withPrefix(method) : e
    }
    this.applied = {
      id: spec.instanceId,
      method,
      plan: applied,
      // pf keeps its own states; conntrack is Linux's. tun changes routes, not NAT: nothing to flush.
      flush: method === 'pf' || method === 'tun' ? [] : conntrackFlushArgv(spec.dns),
      natPorts: method === 'pf' ? [spec.listenPort, ...(spec.dns ? [spec.dns.port] : [])] : [],
    }
    await this.flushConntrack(this.applied.flush)
    const object = method === 'tun' ? tunDeviceName(spec.instanceId) : objectName(spec.instanceId)
    this.log('verbose', `${method}: ${plan.apply.length} step(s) applied for ${object}`)
    return { method, object, families, steps: plan.apply.length }
  }

  /**
   * tun, before anything is journalled: the grant (tun-grant.ts), and the owner must be the sudo
   * caller (or root).
   */
  private checkTunRequest(spec: CaptureSpec): void {
    checkTunGrant(spec, { allowTun: this.opts.allowTun === true })
    this.checkOwner(spec.tunOwner, 'tun: the device may only be owned by')
  }

  /**
   * tun, read-only checks of the kernel: the id's routing table must be unused (two ids whose
   * hashes collide would otherwise share a table, and the failed apply's revert would delete the
   * other instance's rule and routes); and a loose rp_filter on `all` is worth a warning, since
   * it overrides the strict one the plan sets on the device (the kernel uses the maximum).
   */
  private async checkTun(spec: CaptureSpec, families: Array<4 | 6>): Promise<void> {
    if (await tunTableInUse(this.opts.exec, tunTable(spec.instanceId), families)) {
      throw new TunnelError('HELPER', `tun: routing table ${tunTable(spec.instanceId)} is already in use`, {
        hint: 'start again: instance ids are random',
      })
    }
    if (spec.tunOwner !== 0 && (await rpFilterAll(this.opts.exec)) === 2) {
      this.log('warn', `tun: net.ipv4.conf.all.rp_filter is 2 (loose), which overrides the strict source check on ${tunDeviceName(spec.instanceId)}: its owner can inject packets with any source address this host has a route to`)
    }
  }

  /** Under sudo, a uid the spec names (device owner, --owner-only) must be the caller's or root's. */
  private checkOwner(uid: number | undefined, what: string): void {
    const caller = this.opts.callerUid
    if (uid !== undefined && caller !== undefined && uid !== caller && uid !== 0) {
      throw new TunnelError('HELPER', `${what} uid ${caller} (the sudo caller), not ${uid}`)
    }
  }

  /**
   * pf: load + enable, then at once record the enable token in the journal (it exists only
   * now; a crash later must still release it). Returns the plan with the full revert.
   */
  private async applyPf(id: string, plan: Plan, entry: JournalEntry): Promise<Plan> {
    const token = await applyPfPlan(this.opts.exec, plan)
    const full: Plan = { ...plan, revert: pfRevert(id, token) }
    try {
      if (token !== undefined) this.opts.journal.write({ ...entry, pfToken: token, revert: full.revert })
    } catch (e) {
      await revertSteps(this.opts.exec, full.revert)
      throw e
    }
    return full
  }

  private async revertNow(): Promise<RevertResult> {
    const a = this.applied
    if (!a) return { reverted: false }
    // pf: a reference that cannot be released is already gone (see pf.ts).
    const failed = (await revertSteps(this.opts.exec, a.plan.revert)).failed.filter((f) => !isPfReleaseStep(f.argv))
    if (failed.length > 0) {
      // Keep state and journal: a retry (or a later cleanup) can still finish the job.
      throw new TunnelError('FW_APPLY', `${a.method}: revert: ${failed.map((f) => f.error).join('; ')}`, {
        hint: 'run `subnet-tunnel cleanup` as root',
      })
    }
    this.applied = undefined
    this.opts.journal.remove(a.id)
    await this.flushConntrack(a.flush)
    this.log('verbose', `${a.method}: reverted ${objectName(a.id)}`)
    return { reverted: true }
  }

  /** Best effort: a missing conntrack tool or "0 entries deleted" (exit 1) is not an error. */
  private async flushConntrack(steps: readonly string[][]): Promise<void> {
    for (const argv of steps) {
      const r = await this.opts.exec.run(argv)
      if (r.code === 127) {
        this.log('verbose', 'conntrack not installed: UDP DNS flows started before this change keep their old route until they expire')
        return
      }
      if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) this.log('verbose', `${argv.join(' ')}: ${r.stderr.trim()}`)
    }
  }

  /**
   * Idempotent revert behind any request still running; used on stdin EOF and signals.
   * Resolves true when nothing of ours is left applied (reverted now, or never applied).
   */
  async shutdown(): Promise<boolean> {
    return await this.serial(async () => {
      try {
        await this.revertNow()
        return true
      } catch (e) {
        this.log('error', errorMessage(e))
        return false
      }
    })
  }
}
