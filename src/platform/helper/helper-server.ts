/**
 * The privileged helper's logic, free of process plumbing so it can be tested in-process with a
 * fake executor: validated requests in, responses out, at most one applied plan at a time, and
 * an idempotent revert. helper-main.ts wires it to stdin/stdout and signals.
 */
import { TunnelError, errorMessage } from '../../errors'
import { scopeRecord } from '../firewall/capture-scope'
import { firewallFor } from '../firewall/choose-method'
import { applyPlan, revertSteps } from '../firewall/executor'
import { guardPlan, switchGuard, type GuardPlan, type GuardSpec } from '../firewall/fail-closed'
import { addToCgroup, cgroup2Root, createCgroup, removeCgroup } from '../os/cgroup'
import { checkCgroupAdd } from './cgroup-grant'
import { includedFamilies } from '../firewall/naming'
import type { CaptureSpec, Executor, Firewall, MethodName, Plan } from '../firewall/types'
import { defaultNatLook, type NatLookFn } from '../os/pf-device'
import type { NatLookAnswer } from '../os/pf-natlook'
import { cleanupStale, type CleanupReport } from './cleanup'
import { flushConntrack } from './conntrack-flush'
import { currentNetns, processStartTime, type Journal, type JournalEntry } from './journal'
import { BadRequest, parseRequest, type HelperRequest, type HelperResponse, type LogLevel } from './protocol'
import { toWireError } from './protocol-wire'
import { HelperLearnt } from './helper-learn'
import { checkTunGrant } from './tun-grant'

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
  /** process.platform (tests). */
  platform?: NodeJS.Platform
  /** exec --only seams (tests): where cgroup v2 is, a process's ids, this helper's ancestors. */
  cgroupRoot?: string
  processIds?: (pid: number) => { uid: number; ppid: number } | undefined
  ancestors?: () => number[]
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
  fw: Firewall
  /** The full revert (pf: with the enable token that apply took). */
  revert: string[][]
  /** conntrack deletions to run after apply and after revert (DNS flows). */
  flush: string[][]
  /** conntrack deletions after revert only (our redirected TCP flows: stale-flows.ts). */
  revertFlush: string[][]
  /** pf: the ports our rdr rules redirect to; natlook answers only for these. */
  natPorts: number[]
  /** exec --only: the cgroup (its name) and where cgroup v2 is mounted. */
  cgroup?: { name: string; root: string }
  /** --route-by-name: the learnt addresses (spec.learn only). */
  learnt?: HelperLearnt
}

/** The --fail-closed guard of the applied instance (fail-closed.ts). */
interface Guard {
  readonly plan: GuardPlan
  closed: boolean
}

export class HelperServer {
  private applied: Applied | undefined
  private guard: Guard | undefined
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
        return this.cleanup({ guards: true })
      case 'natlook':
        return this.natlook(req)
      case 'guard':
        return this.buildGuard(req.spec)
      case 'guard-state':
        return this.setGuard(req.closed)
      case 'cgroup-add':
        return this.cgroupAdd(req.pid)
      case 'learn': {
        const a = this.applied
        if (!a?.learnt) throw new TunnelError('HELPER', 'learn: no instance set up for learnt addresses is applied')
        return a.learnt.learn(req.entries)
      }
    }
  }

  /** exec --only: moves the command into the capture's cgroup (checks: cgroup-grant.ts). */
  private async cgroupAdd(pid: number): Promise<{ pid: number }> {
    const cg = this.applied?.cgroup
    if (!cg) throw new TunnelError('HELPER', 'cgroup-add: no exec --only capture is applied')
    checkCgroupAdd(pid, { callerUid: this.opts.callerUid, processIds: this.opts.processIds, ancestors: this.opts.ancestors })
    addToCgroup(cg.root, cg.name, pid)
    this.log('verbose', `exec --only: process ${pid} is in cgroup ${cg.name}`)
    return { pid }
  }

  /**
   * --fail-closed: builds the guard of the applied instance (open), journalled first in a file
   * of its own that outlives this helper: only an explicit cleanup removes it.
   */
  private async buildGuard(spec: GuardSpec): Promise<{ families: Array<4 | 6> }> {
    const a = this.applied
    if (!a || a.id !== spec.instanceId) throw new TunnelError('HELPER', 'guard: only for the instance whose rules are applied')
    if (this.guard) throw new TunnelError('HELPER', `guard: instance ${a.id} has one already`)
    if ((this.opts.platform ?? process.platform) !== 'linux') {
      throw new TunnelError('FW_UNSUPPORTED', '--fail-closed needs Linux policy routing', { hint: 'leave out --fail-closed' })
    }
    this.checkOwner(spec.ownerUid, '--fail-closed: the guard may only be limited to')
    const plan = guardPlan(spec)
    const pid = this.opts.pid ?? process.pid
    this.opts.journal.writeGuard({
      id: spec.instanceId,
      helperPid: pid,
      helperStart: processStartTime(pid) ?? '',
      mainPid: this.opts.mainPid ?? process.ppid,
      netns: this.opts.netns ?? currentNetns(),
      families: plan.families,
      ...(spec.ownerUid !== undefined && { ownerUid: spec.ownerUid }),
      createdAt: new Date().toISOString(),
    })
    try {
      await applyPlan(this.opts.exec, { apply: plan.build, revert: plan.remove })
    } catch (e) {
      this.opts.journal.removeGuard(spec.instanceId)
      throw e instanceof TunnelError ? e.withPrefix('fail-closed') : e
    }
    this.guard = { plan, closed: false }
    this.log('verbose', `fail-closed: guard built for ${a.id} (open)`)
    return { families: plan.families }
  }

  /** Closes (SSH down: the kernel refuses the captured networks) or opens the guard. */
  private async setGuard(closed: boolean): Promise<{ closed: boolean }> {
    const g = this.guard
    if (!g) throw new TunnelError('HELPER', 'guard-state: no guard is built')
    if (g.closed === closed) return { closed }
    await switchGuard(this.opts.exec, g.plan, closed)
    g.closed = closed
    this.log('verbose', `fail-closed: guard ${closed ? 'closed' : 'open'}`)
    return { closed }
  }

  /**
   * pf: the original destination of a connection our rdr rules sent to our listener (or DNS
   * interceptor). Refused unless pf rules are applied and dst is one of their redirect ports:
   * the caller may learn where its own redirected connections were going, nothing else.
   */
  private async natlook(req: Extract<HelperRequest, { op: 'natlook' }>): Promise<NatLookAnswer> {
    const a = this.applied
    if (!a || a.natPorts.length === 0) throw new TunnelError('HELPER', 'natlook: no pf rules are applied')
    if (!a.natPorts.includes(req.dst.port)) {
      throw new TunnelError('HELPER', `natlook: port ${req.dst.port} is not a redirect target of ${a.fw.objectName(a.id)}`)
    }
    this.natlookFn ??= this.opts.natlook ?? defaultNatLook()
    return this.natlookFn({ src: req.src, dst: req.dst, proto: req.proto })
  }

  /** Runs stale cleanup for this namespace (at start; with guards, on request: `subnet-tunnel cleanup`). */
  cleanup(o: { guards?: boolean } = {}): Promise<CleanupReport> {
    return cleanupStale(this.opts.exec, {
      journal: this.opts.journal,
      netns: this.opts.netns,
      isAlive: this.opts.isAlive,
      ...(o.guards && { guards: true }),
    })
  }

  private async apply(method: MethodName, spec: CaptureSpec): Promise<ApplyResult> {
    if (this.applied) {
      throw new TunnelError('HELPER', `rules of instance ${this.applied.id} are already applied`, {
        hint: 'revert before applying again',
      })
    }
    const fw = firewallFor(method)
    if (spec.learn && !fw.learn) {
      throw new TunnelError('FW_UNSUPPORTED', `${method}: addresses learnt from DNS answers (--route-by-name) are not supported`, { hint: 'use --method nft, nat or tun' })
    }
    const plan = fw.plan(spec)
    const families = includedFamilies(spec)
    this.checkOwner(spec.ownerUid, '--owner-only: capture may only be limited to')
    if (fw.capture === 'device') this.checkDeviceRequest(spec)
    const pid = this.opts.pid ?? process.pid
    // Journal first, with the full revert list: if we are killed half-way, cleanup still knows.
    const entry: JournalEntry = {
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
    let cgroup: Applied['cgroup']
    try {
      await fw.preflight?.(spec, { exec: this.opts.exec, warn: (m) => this.log('warn', m) })
      // exec --only: the cgroup exists before the rules that name it (both resolve it then).
      if (spec.cgroup !== undefined) cgroup = this.makeCgroup(spec.cgroup)
    } catch (e) {
      this.opts.journal.remove(spec.instanceId)
      throw e
    }
    // Redirected TCP flows a dead proxy left to the networks we capture (stale-flows.ts).
    await this.flushConntrack(fw.flushBefore?.(spec) ?? [])
    let revert = plan.revert
    try {
      if (fw.apply) revert = await this.applyRecorded(fw, plan, entry)
      else await applyPlan(this.opts.exec, plan)
    } catch (e) {
      // The plan's own undo already ran; the entry is no longer needed.
      if (cgroup) await removeCgroup(cgroup.root, cgroup.name).catch(() => {})
      this.opts.journal.remove(spec.instanceId)
      throw e instanceof TunnelError ? e.withPrefix(method) : e
    }
    this.applied = {
      id: spec.instanceId,
      fw,
      revert,
      flush: fw.flushAfter?.(spec) ?? [],
      revertFlush: fw.flushAfterRevert?.(spec) ?? [],
      natPorts: fw.lookupPorts?.(spec) ?? [],
      ...(cgroup && { cgroup }),
      ...(spec.learn && fw.learn && { learnt: new HelperLearnt(fw, spec, this.opts.exec, (m) => this.log('warn', m)) }),
    }
    await this.flushConntrack(this.applied.flush)
    this.log('verbose', `${method}: ${plan.apply.length} step(s) applied for ${fw.objectName(spec.instanceId)}`)
    return { method, object: fw.objectName(spec.instanceId), families, steps: plan.apply.length }
  }

  private makeCgroup(name: string): NonNullable<Applied['cgroup']> {
    const root = this.opts.cgroupRoot ?? cgroup2Root()
    if (!root) {
      throw new TunnelError('FW_UNSUPPORTED', 'exec --only needs cgroup v2, and none is mounted here', {
        hint: 'mount the unified hierarchy (systemd does by default), or leave out --only',
      })
    }
    createCgroup(root, name)
    return { name, root }
  }

  /**
   * A device handed to a user (tun), before anything is journalled: the grant (tun-grant.ts),
   * and the owner must be the sudo caller (or root).
   */
  private checkDeviceRequest(spec: CaptureSpec): void {
    checkTunGrant(spec, { allowTun: this.opts.allowTun === true })
    this.checkOwner(spec.tunOwner, 'tun: the device may only be owned by')
  }

  /** Under sudo, a uid the spec names (device owner, --owner-only) must be the caller's or root's. */
  private checkOwner(uid: number | undefined, what: string): void {
    const caller = this.opts.callerUid
    if (uid !== undefined && caller !== undefined && uid !== caller && uid !== 0) {
      throw new TunnelError('HELPER', `${what} uid ${caller} (the sudo caller), not ${uid}`)
    }
  }

  /**
   * A backend whose apply learns something the revert needs (pf: the enable token): run it,
   * then record that in the journal at once — a crash later must still be able to undo it.
   * Returns the full revert.
   */
  private async applyRecorded(fw: Firewall, plan: Plan, entry: JournalEntry): Promise<string[][]> {
    const learnt = await fw.apply!(this.opts.exec, plan)
    if (Object.keys(learnt).length === 0) return plan.revert
    const record = { ...entry, ...learnt }
    const revert = fw.revert(record)
    try {
      this.opts.journal.write({ ...record, revert })
    } catch (e) {
      await revertSteps(this.opts.exec, revert)
      throw e
    }
    return revert
  }

  private async revertNow(): Promise<RevertResult> {
    const a = this.applied
    if (!a) return { reverted: false }
    // --fail-closed: the guard closes BEFORE the capture goes, so nothing slips out in between;
    // it stays closed (and journalled) after we are gone, until `subnet-tunnel cleanup`.
    if (this.guard && !this.guard.closed) {
      await this.setGuard(true).catch((e: unknown) => this.log('error', `fail-closed: cannot close the guard: ${errorMessage(e)}`))
    }
    // A step that is already done (pf: a reference already released) is no failure.
    const failed = (await revertSteps(this.opts.exec, a.revert)).failed.filter((f) => !a.fw.isSpentStep?.(f.argv))
    if (failed.length > 0) {
      // Keep state and journal: a retry (or a later cleanup) can still finish the job.
      throw new TunnelError('FW_APPLY', `${a.fw.name}: revert: ${failed.map((f) => f.error).join('; ')}`, {
        hint: 'run `subnet-tunnel cleanup` as root',
      })
    }
    a.learnt?.clear()
    if (a.cgroup) {
      // After the rules: what is still inside is killed (moved out it would go uncaptured).
      const killed = await removeCgroup(a.cgroup.root, a.cgroup.name)
      if (killed > 0) this.log('info', `exec --only: killed ${killed} process(es) left in cgroup ${a.cgroup.name}`)
    }
    this.applied = undefined
    this.opts.journal.remove(a.id)
    await this.flushConntrack([...a.flush, ...a.revertFlush])
    this.log('verbose', `${a.fw.name}: reverted ${a.fw.objectName(a.id)}`)
    return { reverted: true }
  }

  private flushConntrack(steps: readonly string[][]): Promise<void> {
    return flushConntrack(this.opts.exec, steps, (m) => this.log('verbose', m))
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

