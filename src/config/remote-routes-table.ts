/**
 * Parser of the column tables of `netstat -rn` and `route -n`, in the three layouts a bastion
 * prints (LC_ALL=C, so the headers are English):
 *
 *   Linux net-tools and busybox, IPv4 (`netstat -rn`, `route -n`; /proc/net/route):
 *     Destination     Gateway         Genmask         Flags Metric Ref    Use Iface
 *     10.30.0.0       10.20.0.254     255.255.0.0     UG    50     0        0 lan1
 *   Linux net-tools and busybox, IPv6 (`route -n -A inet6`; /proc/net/ipv6_route, local table too):
 *     Destination                    Next Hop                   Flag Met Ref  Use If
 *     fd00:30::/48                   fd00:20::fe                UG   50  1      0 lan1
 *   BSD (FreeBSD, macOS; `netstat -rn` prints both families, each after "Internet:"/"Internet6:"):
 *     Destination        Gateway            Flags     Netif Expire
 *     10.2.0.0/24        link#2             U          igb0
 *     192.168.1          link#10            UCS         en0      !   (macOS: classful, no /len)
 *
 * The layout is told by the column header line, so the parser needs no marker: a section may hold
 * any of them. Each row is judged alone; rows that do not fit are skipped and counted.
 */
import ipaddr from 'ipaddr.js'
import type { Cidr } from './cidr'
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
} from './remote-routes-lines'

type Layout =
  | { readonly kind: 'nt4'; readonly metricCol: number }
  | { readonly kind: 'nt6' }
  | { readonly kind: 'bsd'; readonly netifCol: number; readonly family: 4 | 6 | undefined }
  | { readonly kind: 'none' }

/** Lines that are titles, not routes: not counted as ignored. */
const TITLES = /^(Kernel IP(v6)? routing table|Routing tables?)\b/

/** Routes of every table in the text (any layout, both families). Never throws. */
export function parseRouteTables(lines: readonly Line[]): ParsedRoutes {
  const routes: RemoteRoute[] = []
  const ownAddresses: string[] = []
  let ignoredLines = 0
  let truncated = false
  let layout: Layout = { kind: 'none' }
  // BSD names the family on its own line before each table's header.
  let bsdFamily: 4 | 6 | undefined
  for (const line of lines) {
    if (line.unusable) {
      ignoredLines++
      continue
    }
    const t = tokens(line.text)
    if (t.length === 0 || TITLES.test(line.text)) continue
    if (t[0] === 'Destination') {
      layout = headerLayout(t, bsdFamily)
      continue
    }
    if (t.length === 1 && t[0].endsWith(':')) {
      // "Internet:", "Internet6:"; other families ("Netgraph:") have no routes we can use.
      bsdFamily = t[0] === 'Internet:' ? 4 : t[0] === 'Internet6:' ? 6 : undefined
      layout = { kind: 'none' }
      continue
    }
    if (routes.length >= MAX_SECTION_ROUTES) {
      truncated = true
      break
    }
    const r =
      layout.kind === 'nt4' ? netTools4(t, layout.metricCol, line.no)
      : layout.kind === 'nt6' ? netTools6(t, line.no)
      : layout.kind === 'bsd' ? bsd(t, layout, line.no)
      : undefined
    if (!r) {
      ignoredLines++
      continue
    }
    if (r.kind === 'local') addOnce(ownAddresses, r.net.address)
    routes.push({ ...r })
  }
  return { routes, ownAddresses, ignoredLines, truncated }
}

function headerLayout(t: string[], bsdFamily: 4 | 6 | undefined): Layout {
  if (t.includes('Genmask')) return { kind: 'nt4', metricCol: t.indexOf('Metric') }
  if (t[1] === 'Next' && t[2] === 'Hop') return { kind: 'nt6' }
  if (t[1] === 'Gateway' && t[2] === 'Flags') return { kind: 'bsd', netifCol: t.indexOf('Netif'), family: bsdFamily }
  return { kind: 'none' }
}

const FLAGS = /^[A-Za-z0-9!]{1,16}$/

/** A net-tools/busybox IPv4 row: destination, gateway, genmask, flags, ..., interface last. */
function netTools4(t: string[], metricCol: number, no: number): RouteDraft | undefined {
  if (t.length < 5) return undefined
  const [dst, gw, mask, flags] = t
  if (!FLAGS.test(flags)) return undefined
  const prefix = maskPrefix(mask)
  const addr = dst === 'default' ? '0.0.0.0' : parseIp(dst, 4)
  if (prefix === undefined || addr === undefined) return undefined
  const net = parseNet(`${addr}/${prefix}`, 4)
  if (!net) return undefined
  const r = draft(net, 'net-tools', no)
  const iface = t[t.length - 1]
  r.dev = safeName(iface)
  r.metric = metricCol > 0 ? safeNumber(t[metricCol]) : undefined
  if (flags.includes('G')) r.gateway = parseIp(gw, 4)
  // `!` is an unreachable or prohibit route. A blackhole or throw route shows as "U" with no
  // interface ("*"): /proc/net/route has no flag for them (captured on Linux 6.x).
  if (flags.includes('!') || iface === '*' || iface === '-') r.kind = 'reject'
  r.connected = r.kind === 'unicast' && !flags.includes('G') && r.dev !== undefined
  return r
}

/** A dotted IPv4 netmask's prefix length; undefined when not a contiguous mask. */
function maskPrefix(mask: string): number | undefined {
  const m = parseIp(mask, 4)
  if (m === undefined) return undefined
  return ipaddr.IPv4.parse(m).prefixLengthFromSubnetMask() ?? undefined
}

/** A net-tools/busybox IPv6 row: destination/len, next hop, flags, metric, ref, use, interface. */
function netTools6(t: string[], no: number): RouteDraft | undefined {
  if (t.length < 4) return undefined
  const [dst, hop, flags, metric] = t
  if (!FLAGS.test(flags)) return undefined
  const net = parseNet(dst, 6)
  if (!net) return undefined
  const r = draft(net, 'net-tools', no)
  r.dev = t.length >= 7 ? safeName(t[t.length - 1]) : undefined
  r.metric = safeNumber(metric)
  if (flags.includes('G')) r.gateway = parseIp(hop, 6)
  // /proc/net/ipv6_route lists the local table too: the bastion's own addresses are /128 routes
  // flagged `n` (RTF_NONEXTHOP) with metric 0; `!` is a reject route (unreachable, blackhole...).
  if (flags.includes('!')) r.kind = 'reject'
  else if (flags.includes('n') && isHostNet(net) && !flags.includes('G')) r.kind = 'local'
  r.connected = r.kind === 'unicast' && !flags.includes('G') && r.dev !== undefined
  return r
}

/** A BSD row: destination, gateway, flags, [Refs Use | Use Mtu], Netif, [Expire]. */
function bsd(t: string[], layout: Extract<Layout, { kind: 'bsd' }>, no: number): RouteDraft | undefined {
  if (t.length < 3) return undefined
  const [dst, gw, flags] = t
  if (!FLAGS.test(flags)) return undefined
  const host = flags.includes('H')
  const family = layout.family ?? (dst.includes(':') || gw.includes(':') ? 6 : 4)
  const net = dst === 'default' ? defaultNet(family) : bsdNet(dst, family, host)
  if (!net) return undefined
  const r = draft(net, 'bsd', no)
  const netif = layout.netifCol > 0 ? t[layout.netifCol] : undefined
  r.dev = safeName(netif)
  if (flags.includes('G')) r.gateway = parseIp(gw)
  const mac = /^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$/i.test(gw)
  // Flag letters: netstat(1) of FreeBSD and macOS (B blackhole, R reject, b broadcast,
  // m multicast, L link-layer entry, H host, G gateway).
  if (flags.includes('B')) r.kind = 'blackhole'
  else if (flags.includes('R')) r.kind = 'reject'
  else if (flags.includes('b')) r.kind = 'broadcast'
  else if (flags.includes('m')) r.kind = 'multicast'
  // The bastion's own addresses are host routes through the loopback interface.
  else if (host && netif !== undefined && /^lo\d*$/.test(netif) && !flags.includes('G')) r.kind = 'local'
  // macOS lists its ARP/NDP cache as host routes whose gateway is a MAC address.
  else if (host && (mac || flags.includes('L'))) r.kind = 'neighbor'
  r.connected = r.kind === 'unicast' && !flags.includes('G') && r.dev !== undefined
  return r
}

/**
 * A BSD destination: "10.2.0.0/24", "fe80::%em0/64", "::1", a host "10.2.0.1", or macOS's
 * shortened network "192.168.1" / "10.1/16" (trailing zero octets left out; without /len the
 * mask is the classful one: netstat's netname() and domask()).
 */
function bsdNet(dst: string, family: 4 | 6, host: boolean): Cidr | undefined {
  if (family === 6) return parseNet(dst, 6)
  const m = /^(\d{1,3}(?:\.\d{1,3}){0,3})(?:\/(\d{1,2}))?$/.exec(dst)
  if (!m) return undefined
  const octets = m[1].split('.')
  let prefix: number
  if (m[2] !== undefined) prefix = Number(m[2])
  else if (host || octets.length === 4) prefix = 32
  else prefix = Math.max(octets.length * 8, classfulPrefix(Number(octets[0])))
  while (octets.length < 4) octets.push('0')
  return parseNet(`${octets.join('.')}/${prefix}`, 4)
}

function classfulPrefix(firstOctet: number): number {
  return firstOctet < 128 ? 8 : firstOctet < 192 ? 16 : 24
}
