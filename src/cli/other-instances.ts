/**
 * A second instance for the same subnets: both install redirect rules for them, and which one
 * gets a connection depends on the method (nat: the newest instance's jump is inserted first,
 * so it wins; nft: two tables at the same priority, order not defined). Refused unless --force,
 * naming the instance that is there already and how to stop it.
 */
import { type Cidr, cidrsOverlap, formatCidr, tryParseCidr } from '../config/cidr'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import type { FoundInstance } from '../status/control-client'

export interface Clash {
  readonly instance: FoundInstance
  /** Its subnets that overlap ours, as it lists them. */
  readonly subnets: string[]
}

/** The instances (of this network namespace) that capture a subnet overlapping one of ours. */
export function clashes(found: readonly FoundInstance[], ours: readonly Cidr[], selfPid = process.pid): Clash[] {
  const out: Clash[] = []
  for (const f of found) {
    if (f.status.pid === selfPid) continue
    const theirs = f.status.subnets.filter((s) => {
      const c = tryParseCidr(s.split('=')[0]!)
      return c !== undefined && ours.some((o) => cidrsOverlap(o, c))
    })
    if (theirs.length > 0) out.push({ instance: f, subnets: theirs.map((s) => s.split('=')[0]!) })
  }
  return out
}

function describe(c: Clash): string {
  const s = c.instance.status
  return `instance ${s.instanceId} (pid ${s.pid}${s.profile ? `, profile ${s.profile}` : ''}) already captures ${c.subnets.join(', ')}`
}

/** Throws ALREADY_RUNNING for a clash, or with `force` only warns (saying who wins). */
export function checkClashes(list: readonly Clash[], ours: readonly Cidr[], force: boolean, log: Logger): void {
  if (list.length === 0) return
  const what = list.map(describe).join('; ')
  const who = 'with --method nat the newest instance takes the connections, with nft which one does is not defined'
  if (force) {
    log.warn('cli', `${what}: starting anyway (--force); ${who}`)
    return
  }
  const first = list[0]!.instance.status
  throw new TunnelError('ALREADY_RUNNING', `${what} in this network namespace (we would capture ${ours.map(formatCidr).join(', ')})`, {
    hint: `stop it first (subnet-tunnel stop ${first.profile ?? first.instanceId}), or start with --force (${who})`,
  })
}
