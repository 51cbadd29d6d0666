/**
 * Who a capture serves, beyond which networks: the gateway's scope (the interfaces and source
 * networks whose forwarded traffic is captured, --gateway-if / --allow) and the owner (only one
 * uid's local connections, --owner-only). Validation here is shared by the CLI, the helper's
 * protocol and the plans: interface names and uids end up as argv tokens, and nft joins its
 * argv into one command buffer, so nothing unchecked may get that far.
 *
 * The DNS guard: in gateway mode the DNS interceptor listens on every address, and with
 * --owner-only the others' queries are not redirected, yet they could still be sent to the
 * interceptor's ports directly. A kernel rule then drops every packet to them that conntrack
 * did not DNAT (REDIRECT is a DNAT): the interceptor only ever sees queries our rules redirected.
 * (A UDP socket cannot ask for its datagrams' original destination — IP_RECVORIGDSTADDR needs
 * TPROXY — but conntrack knows.)
 */
import { cidrsOverlap, formatCidr, tryParseCidr, type Cidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { exemptPorts, isPort, MAX_EXEMPT_PORTS } from './dns-capture'
import type { CaptureSpec, RevertScope, ScopeRecord } from './types'

/** exec --only's cgroup name (src/platform/os/cgroup.ts builds it): `subnet-tunnel-<id>`. */
export const CGROUP_NAME_RE = /^subnet-tunnel-[a-z0-9]{1,16}$/

/** Most interfaces one gateway serves. */
export const MAX_GATEWAY_INTERFACES = 8
/** Most source networks one gateway serves (nat: interfaces × sources jumps per family). */
export const MAX_GATEWAY_SOURCES = 32
/** Largest uid: (uid_t)-1 means "no uid" to the kernel. */
const MAX_UID = 2 ** 32 - 2

/**
 * An interface name as the kernel accepts it (IFNAMSIZ 16 with the NUL, no '/', ':' or space,
 * not '.' or '..'), narrowed to the usual characters: no wildcards ('+' in iptables), no quotes,
 * nothing nft would parse as syntax, and no leading '-' or '.' (an argv token that looks like an
 * option).
 */
const IFACE_RE = /^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,14}$/

export function isInterfaceName(v: unknown): v is string {
  return typeof v === 'string' && IFACE_RE.test(v)
}

/** An integer 0..2^32-2. */
export function isUid(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_UID
}

/** Whether the plan drops packets that reach the DNS interceptor without being redirected. */
export function needsDnsGuard(spec: CaptureSpec): boolean {
  return spec.dns !== undefined && (spec.gateway === true || spec.ownerUid !== undefined)
}

/** The journal's record of a spec's scope; only what is set. */
export function scopeRecord(spec: CaptureSpec): ScopeRecord {
  return {
    ...(spec.gateway === true && { gateway: true }),
    ...(spec.gatewayInterfaces && { gatewayInterfaces: [...spec.gatewayInterfaces] }),
    ...(spec.gatewaySources && { gatewaySources: spec.gatewaySources.map(formatCidr) }),
    ...(spec.ownerUid !== undefined && { ownerUid: spec.ownerUid }),
    ...(needsDnsGuard(spec) && { dnsGuard: true }),
    ...(spec.cgroup !== undefined && { cgroup: spec.cgroup }),
    ...(spec.cgroupMatch !== undefined && { cgroupMatch: spec.cgroupMatch }),
    // tun: split DNS's exempting rules carry the ports (tun-exempt.ts); nat and nft name
    // their chains and tables, which the revert removes whole.
    ...(spec.tunOwner !== undefined && spec.dns && exemptPorts(spec.dns).length > 0 && { dnsExemptPorts: exemptPorts(spec.dns) }),
  }
}

/** Whether a journal entry's scope fields are well-formed (absent fields are; old entries have none). */
export function isScopeRecord(e: Record<string, unknown>): boolean {
  const list = (v: unknown, max: number, ok: (x: unknown) => boolean): boolean =>
    v === undefined || (Array.isArray(v) && v.length >= 1 && v.length <= max && v.every(ok))
  return (e.gateway === undefined || typeof e.gateway === 'boolean') &&
    list(e.gatewayInterfaces, MAX_GATEWAY_INTERFACES, isInterfaceName) &&
    list(e.gatewaySources, MAX_GATEWAY_SOURCES, (s) => typeof s === 'string' && s.length <= 64 && tryParseCidr(s) !== undefined) &&
    (e.ownerUid === undefined || isUid(e.ownerUid)) &&
    (e.dnsGuard === undefined || typeof e.dnsGuard === 'boolean') &&
    (e.cgroup === undefined || (typeof e.cgroup === 'string' && CGROUP_NAME_RE.test(e.cgroup))) &&
    (e.cgroupMatch === undefined || ((e.cgroupMatch === 'nft' || e.cgroupMatch === 'iptables') && e.cgroup !== undefined)) &&
    list(e.dnsExemptPorts, MAX_EXEMPT_PORTS, isPort)
}

/** The revert scope of a (validated) journal record. */
export function revertScopeOf(r: ScopeRecord): RevertScope {
  return {
    gateway: r.gateway === true,
    ...(r.gatewayInterfaces && { gatewayInterfaces: r.gatewayInterfaces }),
    ...(r.gatewaySources && { gatewaySources: r.gatewaySources.map((s) => tryParseCidr(s)!) }),
    ...(r.ownerUid !== undefined && { ownerUid: r.ownerUid }),
    dnsGuard: r.dnsGuard === true,
    ...(r.cgroup !== undefined && { cgroup: r.cgroup }),
    ...(r.dnsExemptPorts !== undefined && { dnsExemptPorts: r.dnsExemptPorts }),
  }
}

/** Throws INTERNAL when the scope fields of a spec could produce bad argv. */
export function assertScope(spec: CaptureSpec): void {
  const bad = (what: string): never => {
    throw new TunnelError('INTERNAL', `invalid capture scope: ${what}`)
  }
  if (spec.gateway !== undefined && typeof spec.gateway !== 'boolean') bad(`gateway flag ${String(spec.gateway)}`)
  const ifaces = spec.gatewayInterfaces
  const sources = spec.gatewaySources
  if ((ifaces || sources) && spec.gateway !== true) bad('gateway interfaces or sources without gateway')
  if (ifaces && (ifaces.length === 0 || ifaces.length > MAX_GATEWAY_INTERFACES || !ifaces.every(isInterfaceName))) {
    bad(`interfaces ${JSON.stringify(ifaces)}`)
  }
  if (sources && (sources.length === 0 || sources.length > MAX_GATEWAY_SOURCES || !sources.every(isCanonicalCidr))) {
    bad('sources')
  }
  if (spec.ownerUid !== undefined && !isUid(spec.ownerUid)) bad(`owner uid ${String(spec.ownerUid)}`)
  if (spec.cgroup !== undefined && (!CGROUP_NAME_RE.test(spec.cgroup) || spec.gateway === true)) bad(`cgroup ${String(spec.cgroup)}`)
  if (spec.cgroupMatch !== undefined && (spec.cgroup === undefined || (spec.cgroupMatch !== 'nft' && spec.cgroupMatch !== 'iptables'))) {
    bad(`cgroup match ${String(spec.cgroupMatch)}`)
  }
}

/** A Cidr object exactly as parsing its own text gives it back (nothing else can reach argv). */
function isCanonicalCidr(c: Cidr): boolean {
  const p = tryParseCidr(formatCidr(c))
  return p !== undefined && p.family === c.family && p.address === c.address && p.prefix === c.prefix
}

/**
 * The source networks of one family with every network inside another one dropped, so the rest
 * are disjoint (nft refuses overlapping intervals in one set), in the given order.
 */
export function disjointSources(sources: readonly Cidr[], family: 4 | 6): Cidr[] {
  const mine = sources.filter((c) => c.family === family)
  return mine.filter((c, i) => !mine.some((o, j) => j !== i && cidrsOverlap(o, c) &&
    (o.prefix < c.prefix || (o.prefix === c.prefix && j < i))))
}

/**
 * nat: the match arguments of each PREROUTING jump of one family — one jump per interface ×
 * source network (iptables has no sets here; the product is bounded by the limits above).
 * Empty when sources are given but none of this family: that family is not served at all.
 */
export function gatewayJumpMatches(scope: RevertScope, family: 4 | 6): string[][] {
  const ifaces = scope.gatewayInterfaces ?? []
  const sources = scope.gatewaySources ? disjointSources(scope.gatewaySources, family) : undefined
  if (sources && sources.length === 0) return []
  const byIface = ifaces.length > 0 ? ifaces.map((i) => ['-i', i]) : [[]]
  const bySource = sources ? sources.map((c) => ['-s', formatCidr(c)]) : [[]]
  return byIface.flatMap((i) => bySource.map((s) => [...i, ...s]))
}
