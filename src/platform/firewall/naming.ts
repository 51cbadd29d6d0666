import { formatCidr, type Cidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { assertScope } from './capture-scope'
import { assertDnsCapture, dnsServersOf } from './dns-capture'
import type { CaptureSpec } from './types'

/** Instance ids are short and boring on purpose: they end up in kernel object names and file names. */
export const INSTANCE_ID_RE = /^[a-z0-9]{1,16}$/

/** Prefix of every chain (nat) and table (nft) we create; teardown matches on it. */
export const OBJECT_PREFIX = 'subnet-tunnel-'

/** Matches one of our kernel object names and captures the instance id. */
export const OBJECT_NAME_RE = /^subnet-tunnel-([a-z0-9]{1,16})$/

/** `subnet-tunnel-<id>`, after checking the id (a bad id must never reach argv). */
export function objectName(instanceId: string): string {
  if (!INSTANCE_ID_RE.test(instanceId)) {
    throw new TunnelError('INTERNAL', `invalid instance id "${instanceId}"`)
  }
  return OBJECT_PREFIX + instanceId
}

/** One capture rule: redirect (include) or leave alone (exclude). */
export interface CaptureRule {
  readonly action: 'redirect' | 'return'
  readonly cidr: Cidr
}

/**
 * The include/exclude lists as an ordered rule list with router semantics (longest prefix wins):
 * longest prefix first, so the first match in the kernel chain is the most specific network.
 * At equal length an exclude comes first (same network both included and excluded → excluded),
 * and duplicates are dropped. Stable otherwise, so plans are deterministic.
 */
export function orderedRules(spec: CaptureSpec, family: 4 | 6): CaptureRule[] {
  const seen = new Set<string>()
  const rules: CaptureRule[] = []
  const add = (action: CaptureRule['action'], list: readonly Cidr[]): void => {
    for (const cidr of list) {
      if (cidr.family !== family) continue
      const key = formatCidr(cidr)
      if (seen.has(key)) continue
      seen.add(key)
      rules.push({ action, cidr })
    }
  }
  add('return', spec.exclude)
  add('redirect', spec.include)
  // Array.prototype.sort is stable (ES2019), so excludes stay ahead at equal prefix length.
  return rules.sort((a, b) => b.cidr.prefix - a.cidr.prefix)
}

/**
 * Address families that get kernel rules: those with at least one include or DNS server (an
 * IPv6 nameserver needs ip6tables rules even when only IPv4 networks are tunnelled).
 */
export function includedFamilies(spec: CaptureSpec): Array<4 | 6> {
  const out: Array<4 | 6> = []
  for (const f of [4, 6] as const) {
    const dns = spec.dns ? dnsServersOf(spec.dns, f).length > 0 : false
    if (dns || spec.include.some((c) => c.family === f) || spec.learn?.families.includes(f)) out.push(f)
  }
  return out
}

/** Checks the parts of a spec that end up in argv, so a plan can never be built from garbage. */
export function assertSpec(spec: CaptureSpec): void {
  objectName(spec.instanceId)
  if (!Number.isInteger(spec.listenPort) || spec.listenPort < 1 || spec.listenPort > 65535) {
    throw new TunnelError('INTERNAL', `invalid listen port ${spec.listenPort}`)
  }
  assertScope(spec)
  if (spec.dns) {
    assertDnsCapture(spec.dns)
    // Forwarded clients' queries go to the gateway port: without one they would have nowhere to go.
    if ((spec.gateway === true) !== (spec.dns.gatewayPort !== undefined)) {
      throw new TunnelError('INTERNAL', 'invalid DNS capture: a gateway port exactly when gateway')
    }
  }
}
