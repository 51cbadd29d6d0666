/**
 * Parser of iproute2's `ip -4 route` / `ip -6 route` (also `ip route show table main` and
 * busybox's `ip`, whose output is the same with fewer attributes and doubled blanks).
 *
 * One route per line: `[TYPE] PREFIX|default [key value | flag]...`, e.g.
 *   default via 203.0.113.1 dev eth0 proto dhcp src 203.0.113.10 metric 100
 *   10.20.0.0/16 dev lan1 proto kernel scope link src 10.20.0.1
 *   blackhole 10.99.0.0/16
 *   2001:db8:5::/64 via fe80::1 dev eth0 proto ra metric 1024 expires 1499sec pref medium
 * A multipath route continues on indented `nexthop via … dev … weight …` lines. Attribute
 * order differs between versions, so keys are looked up anywhere on the line; unknown keys are
 * skipped. See ip-route(8) and iproute2's ip/iproute.c (print_route).
 */
import {
  MAX_SECTION_ROUTES,
  addOnce,
  defaultNet,
  draft,
  isHostNet,
  parseIp,
  parseNet,
  safeName,
  safeNumber,
  tokens,
  type Line,
  type ParsedRoutes,
  type RemoteRoute,
  type RouteDraft,
  type RouteKind,
} from './remote-routes-lines'

/** Route types iproute2 prints before the prefix (every type but unicast, unless -d). */
const TYPES: ReadonlySet<string> = new Set([
  'unicast',
  'local',
  'broadcast',
  'multicast',
  'anycast',
  'nat',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
])

/** Keys followed by one value that we do not use: skipped together with their value. */
const VALUED: ReadonlySet<string> = new Set([
  'scope', 'table', 'tos', 'dsfield', 'from', 'expires', 'mtu', 'advmss', 'hoplimit', 'pref',
  'realm', 'realms', 'nhid', 'error', 'weight', 'rtt', 'rttvar', 'window', 'cwnd', 'initcwnd',
  'initrwnd', 'ssthresh', 'reordering', 'features', 'quickack', 'congctl', 'rto_min', 'encap',
])

/** A route being read, with the count of its multipath next hops and of those that are down. */
interface IpDraft {
  readonly route: RouteDraft
  hops: number
  downHops: number
}

/**
 * Routes of one `ip -4 route` (family 4) or `ip -6 route` (family 6) output. Lines that are not
 * routes of that family are skipped and counted; nothing throws.
 */
export function parseIpRoutes(lines: readonly Line[], family: 4 | 6): ParsedRoutes {
  const routes: RemoteRoute[] = []
  const ownAddresses: string[] = []
  let ignoredLines = 0
  let truncated = false
  let current: IpDraft | undefined
  const finish = (): void => {
    if (current) routes.push(finalize(current))
    current = undefined
  }
  for (const line of lines) {
    if (line.unusable) {
      ignoredLines++
      continue
    }
    const t = tokens(line.text)
    if (t.length === 0) continue
    if (t[0] === 'nexthop' && /^[ \t]/.test(line.text)) {
      if (current) addNexthop(current, t)
      else ignoredLines++
      continue
    }
    finish()
    if (routes.length >= MAX_SECTION_ROUTES) {
      truncated = true
      break
    }
    const parsed = parseLine(t, family, line.no, ownAddresses)
    if (parsed) current = { route: parsed, hops: 0, downHops: 0 }
    else ignoredLines++
  }
  finish()
  return { routes, ownAddresses, ignoredLines, truncated }
}

function parseLine(t: string[], family: 4 | 6, no: number, own: string[]): RouteDraft | undefined {
  let i = 0
  let kind: RouteKind = 'unicast'
  if (TYPES.has(t[0])) kind = t[i++] as RouteKind
  const dst = t[i++]
  const net = dst === 'default' ? defaultNet(family) : parseNet(dst, family)
  if (!net) return undefined
  const r = draft(net, 'ip', no)
  r.kind = kind
  for (; i < t.length; i++) {
    const key = t[i]
    const value = t[i + 1]
    if (key === 'via') {
      // `via inet6 fe80::1` (an IPv4 route through an IPv6 next hop, RFC 5549) names the family.
      const gw = value === 'inet' || value === 'inet6' ? t[++i + 1] : value
      r.gateway ??= parseIp(gw)
      i++
    } else if (key === 'dev') {
      r.dev ??= safeName(value)
      i++
    } else if (key === 'proto') {
      r.proto = safeName(value)
      i++
    } else if (key === 'metric') {
      r.metric = safeNumber(value)
      i++
    } else if (key === 'src') {
      addOnce(own, parseIp(value, family))
      i++
    } else if (key === 'linkdown') {
      r.linkDown = true
    } else if (VALUED.has(key)) {
      i++
    }
  }
  // A `local` route is an address the bastion answers for itself.
  if (kind === 'local' && isHostNet(net)) addOnce(own, net.address)
  return r
}

/** `nexthop via 10.20.0.253 dev lan1 weight 1 [linkdown|dead]` of a multipath route. */
function addNexthop(d: IpDraft, t: string[]): void {
  d.hops++
  if (t.includes('linkdown') || t.includes('dead')) d.downHops++
  const via = t.indexOf('via')
  if (via >= 0) {
    const v = t[via + 1]
    d.route.gateway ??= parseIp(v === 'inet' || v === 'inet6' ? t[via + 2] : v)
  }
  const dev = t.indexOf('dev')
  if (dev >= 0) d.route.dev ??= safeName(t[dev + 1])
}

function finalize(d: IpDraft): RemoteRoute {
  const r = d.route
  if (d.hops > 0 && d.downHops === d.hops) r.linkDown = true
  // Directly attached: a unicast route out of an interface with no router (scope link). A
  // multipath route that busybox printed without its next hops has neither: not attached.
  r.connected = r.kind === 'unicast' && r.gateway === undefined && r.dev !== undefined
  return { ...r }
}
