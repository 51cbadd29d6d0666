/**
 * --fail-closed: while the SSH connection is down, and after the tunnel has exited until
 * `subnet-tunnel cleanup`, connections to the captured networks fail at once in the kernel
 * instead of leaving in the clear through the local network.
 *
 * The guard is policy routing, the same for every Linux capture method (nat, nft, tun):
 *  - a routing table of its own (GUARD_TABLE_BASE + 24 bits of the id's hash, outside the tun
 *    backend's range) holding `unreachable` routes for the captured networks and `throw` routes
 *    for the excludes (the SSH transport, this machine's networks, the user's -x): the kernel
 *    answers a connect() with EHOSTUNREACH ("No route to host") at once, and a forwarded packet
 *    with ICMP host unreachable, before anything is sent; an excluded address falls through to
 *    the next rules as usual;
 *  - one `ip rule` per family at priority GUARD_RULE_PRIORITY (5353: after `local`, so this
 *    machine's own addresses and loopback — our listener — are never affected; before the tun
 *    backend's 5354 and `main`) pointing at that table: the switch. Present = closed.
 * Open while the tunnel carries traffic (the routing decision comes before the nat/nft
 * redirect, which would otherwise never see the packet); closed while SSH is down and from the
 * moment the helper stops, whatever the reason, until an explicit cleanup removes it.
 * With --owner-only the rule carries the same uidrange as the capture.
 *
 * Everything is derived from the instance id, families and owner: the journal records those,
 * never argv (a forged file can at most remove our own guard).
 */
import { type Cidr, cidrsOverlap, formatCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { INSTANCE_ID_RE } from './naming'
import { ip, isUid } from './tun-naming'
import { applyPlan, revertSteps } from './executor'
import type { Executor, KernelObject } from './types'

export const GUARD_RULE_PRIORITY = 5353
export const GUARD_TABLE_BASE = 0x54000000
const TABLE_MASK = 0xffffff

/** What the guard is built from (the capture's networks, after every exclude is known). */
export interface GuardSpec {
  readonly instanceId: string
  readonly include: readonly Cidr[]
  readonly exclude: readonly Cidr[]
  readonly ownerUid?: number
}

/** What the journal keeps of a guard: enough to remove it. */
export interface GuardRecord {
  readonly id: string
  readonly families: ReadonlyArray<4 | 6>
  readonly ownerUid?: number
}

export interface GuardPlan {
  /** Builds the table (the guard is open afterwards). */
  readonly build: string[][]
  /** Adds the rules: closed. */
  readonly close: string[][]
  /** Removes the rules: open. */
  readonly open: string[][]
  /** Removes everything (rules, then the table). */
  readonly remove: string[][]
  readonly families: Array<4 | 6>
}

/** The guard's table: deterministic, so a removal needs only the id. */
export function guardTable(instanceId: string): number {
  if (!INSTANCE_ID_RE.test(instanceId)) throw new TunnelError('INTERNAL', `invalid instance id "${instanceId}"`)
  // FNV-1a, 32 bits (as the tun backend's table, with another base).
  let h = 0x811c9dc5
  for (let i = 0; i < instanceId.length; i++) {
    h ^= instanceId.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return GUARD_TABLE_BASE + (h & TABLE_MASK)
}

export function isGuardTable(t: number): boolean {
  return Number.isInteger(t) && t >= GUARD_TABLE_BASE && t <= GUARD_TABLE_BASE + TABLE_MASK
}

function ruleArgs(table: number, ownerUid: number | undefined): string[] {
  const uid = ownerUid === undefined ? [] : ['uidrange', `${ownerUid}-${ownerUid}`]
  return ['priority', String(GUARD_RULE_PRIORITY), ...uid, 'lookup', String(table)]
}

/** Pure: the argv of the guard of `spec`. */
export function guardPlan(spec: GuardSpec): GuardPlan {
  const table = guardTable(spec.instanceId)
  if (spec.ownerUid !== undefined && !isUid(spec.ownerUid)) throw new TunnelError('INTERNAL', `invalid uid ${spec.ownerUid}`)
  const families = ([4, 6] as const).filter((f) => spec.include.some((c) => c.family === f))
  const build: string[][] = []
  for (const f of families) {
    // `replace`, includes first: the same network excluded too ends up a throw (exclude wins).
    for (const c of spec.include) if (c.family === f) build.push(ip(f, 'route', 'replace', 'unreachable', formatCidr(c), 'table', String(table)))
    // Only excludes that cut into a captured network matter.
    for (const c of spec.exclude) {
      if (c.family === f && spec.include.some((i) => cidrsOverlap(i, c))) build.push(ip(f, 'route', 'replace', 'throw', formatCidr(c), 'table', String(table)))
    }
  }
  const rec: GuardRecord = { id: spec.instanceId, families, ...(spec.ownerUid !== undefined && { ownerUid: spec.ownerUid }) }
  return { build, close: guardClose(rec), open: guardOpen(rec), remove: guardRemove(rec), families }
}

export function guardClose(r: GuardRecord): string[][] {
  return r.families.map((f) => ip(f, 'rule', 'add', ...ruleArgs(guardTable(r.id), r.ownerUid)))
}

export function guardOpen(r: GuardRecord): string[][] {
  // `rule del priority P lookup T` matches the rule whatever its uidrange.
  return r.families.map((f) => ip(f, 'rule', 'del', 'priority', String(GUARD_RULE_PRIORITY), 'lookup', String(guardTable(r.id))))
}

export function guardRemove(r: GuardRecord): string[][] {
  return [...guardOpen(r), ...r.families.map((f) => ip(f, 'route', 'flush', 'table', String(guardTable(r.id))))]
}

/** Adds (closed) or removes (open) the guard's rules; a rule that is already gone is no failure. */
export async function switchGuard(exec: Executor, plan: GuardPlan, closed: boolean): Promise<void> {
  if (closed) return applyPlan(exec, { apply: plan.close, revert: plan.open })
  const failed = (await revertSteps(exec, plan.open)).failed
  if (failed.length > 0) throw new TunnelError('FW_APPLY', `fail-closed: open: ${failed.map((f) => f.error).join('; ')}`)
}

/** `ip -4 rule show` and `ip -6 rule show`, for the leftover scan and status (readable by anyone). */
export const GUARD_SCAN_ARGV: readonly string[][] = [ip(4, 'rule', 'show'), ip(6, 'rule', 'show')]

/** Closed guards in `ip rule show` output (per family): their table numbers. */
export function parseGuardRules(outputs: ReadonlyArray<string | undefined>): Array<{ family: 4 | 6; table: number }> {
  const out: Array<{ family: 4 | 6; table: number }> = []
  outputs.forEach((text, i) => {
    for (const line of (text ?? '').split('\n')) {
      const m = /^(\d+):.*\blookup (\d+)\b/.exec(line.trim())
      if (m && Number(m[1]) === GUARD_RULE_PRIORITY && isGuardTable(Number(m[2]))) out.push({ family: i === 0 ? 4 : 6, table: Number(m[2]) })
    }
  })
  return out
}

/** Closed guards no live instance owns (`owned`: the tables of live instances), with their removal. */
export function guardLeftovers(outputs: ReadonlyArray<string | undefined>, owned: ReadonlySet<number>): KernelObject[] {
  const out: KernelObject[] = []
  for (const g of parseGuardRules(outputs)) {
    if (owned.has(g.table)) continue
    const t = String(g.table)
    out.push({
      id: '',
      label: `fail-closed guard (IPv${g.family} table ${t})`,
      revert: [ip(g.family, 'rule', 'del', 'priority', String(GUARD_RULE_PRIORITY), 'lookup', t), ip(g.family, 'route', 'flush', 'table', t)],
    })
  }
  return out
}
