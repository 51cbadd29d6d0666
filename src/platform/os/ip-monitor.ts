/**
 * Linux: reading iproute2's `ip -o monitor route address link` (rtnetlink notifications as
 * text, one per line, flushed per message) and `ip -o route get` / `ip -o link show`. Pure
 * parsers: the lines in test/platform/os/fixtures/ip-monitor-linux.txt are real captures.
 *
 * Why `ip monitor` and not rtnetlink through koffi: Node cannot wait on a netlink socket's
 * readability (libuv only polls fds it opened itself as streams/UDP), so a koffi reader would
 * need a thread blocked in recv() that stop() cannot interrupt, plus ~300 lines of nlmsghdr /
 * rtattr decoding. `ip monitor` needs no privilege, exits with us (setpriv --pdeathsig) and its
 * text format has been stable for two decades. iproute2 is present wherever the tun backend
 * works (it plans `ip` commands). The one trap: `ip monitor` names interfaces in route and
 * address lines from an index→name cache filled at its start, so a renamed interface keeps
 * its old name there (captured: the "eth1 renamed to wan1" fixture scenario); link and address
 * lines carry the index, which is what we match on.
 *
 * Line shapes (-o: continuation lines joined with "\"):
 *   [Deleted ]IDX: NAME[@PEER]: <FLAGS> mtu … state STATE …                          link
 *   [Deleted ]IDX: NAME    inet|inet6 ADDR/LEN … scope … LABEL\       valid_lft …     address
 *   [Deleted ][TYPE ]DST[/LEN] [via [inet|inet6] GW] [dev DEV] [table T] [proto P] … route
 * and error lines on stderr ("netlink receive error No buffer space available (105)" when
 * the kernel dropped notifications: a gap).
 */
import type { AddrEvent, LinkEvent, NetEvent, RouteEvent } from './net-events'
import { ipFamily, stripZone } from './net-events'

/** Spawned as the user: reading rtnetlink multicast groups needs no capability. */
export const IP_MONITOR_ARGV: readonly string[] = ['ip', '-o', 'monitor', 'route', 'address', 'link']
export const IP_LINK_LIST_ARGV: readonly string[] = ['ip', '-o', 'link', 'show']
export function ipRouteGetArgv(address: string): string[] {
  return ['ip', '-o', 'route', 'get', address]
}

/** Route types iproute2 prints before the destination (unicast is implied). */
const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'anycast', 'unreachable', 'blackhole', 'prohibit', 'throw', 'nat', 'xresolve'])

const LINK_RE = /^(\d+): ([^\s:@]+)(?:@[^\s:]*)?: <([^>]*)>/
const ADDR_RE = /^(\d+): (\S+)\s+(inet6?) ([0-9A-Fa-f.:]+)(?:\/\d+)?\b/

/** One monitor line → event, or undefined for lines we do not know (they are ignored). */
export function parseIpMonitorLine(raw: string): NetEvent | undefined {
  let s = raw.trim().replace(/^\[[A-Z]+\]\s*/, '') // "[ROUTE]" banners of `ip monitor all`
  let deleted = false
  if (s.startsWith('Deleted ')) {
    deleted = true
    s = s.slice(8)
  }
  const link = LINK_RE.exec(s)
  if (link) return linkEvent(link, deleted)
  const addr = ADDR_RE.exec(s)
  if (addr) {
    const family = addr[3] === 'inet6' ? 6 : 4
    if (ipFamily(addr[4]) !== family) return undefined
    const ev: AddrEvent = { kind: 'addr', deleted, index: Number(addr[1]), dev: addr[2], family, address: addr[4] }
    return ev
  }
  return parseRouteText(s, deleted)
}

function linkEvent(m: RegExpExecArray, deleted: boolean): LinkEvent {
  const flags = new Set(m[3].split(','))
  const up = flags.has('UP')
  // iproute2 prints NO-CARRIER for "IFF_UP and not IFF_RUNNING"; LOWER_UP alone can be
  // transiently set before the operational state follows (seen in the fixtures at link up).
  return { kind: 'link', deleted, index: Number(m[1]), name: m[2], up, running: up && !flags.has('NO-CARRIER') }
}

/** Route line body (after "Deleted "): type, destination, then keyword/value pairs. */
function parseRouteText(s: string, deleted: boolean): RouteEvent | undefined {
  // Multipath nexthops come after "\" on -o lines; they are keywords like any other.
  const tok = s.replace(/\\/g, ' ').split(/\s+/).filter(Boolean)
  let i = 0
  const type = ROUTE_TYPES.has(tok[0]) ? tok[i++] : 'unicast'
  const dst = tok[i++]
  if (dst === undefined) return undefined
  let network: string
  let prefixLen: number
  let family: 4 | 6 | undefined
  if (dst === 'default') {
    network = ''
    prefixLen = 0
  } else {
    const [a, len] = dst.split('/')
    family = ipFamily(a)
    if (!family || (len !== undefined && !/^\d{1,3}$/.test(len))) return undefined
    network = a
    prefixLen = len === undefined ? (family === 4 ? 32 : 128) : Number(len)
  }
  let dev: string | undefined
  let via: string | undefined
  let viaFamilyWord: string | undefined
  let table: string | undefined
  let v6hint = false
  for (; i < tok.length; i++) {
    const k = tok[i]
    if (k === 'via') {
      // iproute2 names the gateway's family only when it differs from the route's: "via inet6
      // fe80::1" is an IPv4 route with an IPv6 next hop (RFC 5549).
      if (tok[i + 1] === 'inet' || tok[i + 1] === 'inet6') viaFamilyWord = tok[++i]
      via ??= tok[++i]
    } else if (k === 'dev') dev ??= tok[++i]
    else if (k === 'table') table = tok[++i]
    else if (k === 'pref') v6hint = true // only IPv6 routes carry a router preference
  }
  if (!family && viaFamilyWord) family = viaFamilyWord === 'inet6' ? 4 : 6
  else if (!family) family = via ? ipFamily(stripZone(via)) : v6hint ? 6 : undefined
  if (dst === 'default') network = family === 6 ? '::' : '0.0.0.0'
  return { kind: 'route', deleted, family, type, network, prefixLen, dev, via, table }
}

/** What `ip -o route get ADDR` says: the device, gateway and source the kernel would use. */
export interface RouteGetResult {
  readonly dev: string
  readonly via?: string
  readonly src?: string
}

/**
 * Parses `ip -o route get` output, e.g. "203.0.113.7 via 192.168.50.1 dev eth0 src
 * 192.168.50.2 uid 0 \    cache". Undefined when it names no device.
 */
export function parseIpRouteGet(out: string): RouteGetResult | undefined {
  const tok = out.split('\n')[0].replace(/\\/g, ' ').split(/\s+/).filter(Boolean)
  let dev: string | undefined
  let via: string | undefined
  let src: string | undefined
  for (let i = 0; i < tok.length; i++) {
    if (tok[i] === 'via') {
      if (tok[i + 1] === 'inet' || tok[i + 1] === 'inet6') i++
      via = tok[++i]
    } else if (tok[i] === 'dev') dev = tok[++i]
    else if (tok[i] === 'src') src = tok[++i]
  }
  return dev ? { dev, via, src } : undefined
}

/** `ip route get` failures that mean "no route right now", not "ip is broken". */
export function isNoRouteError(stderr: string): boolean {
  return /Network is unreachable|No route to host|unreachable|prohibited|Invalid argument/i.test(stderr)
}

/** `ip -o link show` → the state of every interface (same line shape as the monitor's). */
export function parseIpLinkList(out: string): LinkEvent[] {
  const links: LinkEvent[] = []
  for (const line of out.split('\n')) {
    const m = LINK_RE.exec(line.trim())
    if (m) links.push(linkEvent(m, false))
  }
  return links
}
