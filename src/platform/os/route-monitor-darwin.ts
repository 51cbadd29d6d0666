/**
 * macOS: reading `route -n monitor` (the PF_ROUTE socket as text; reading it needs no
 * privilege), `route -n get ADDR` and `ifconfig DEV`. NOT YET RUN ON A REAL MAC: written from
 * network_cmds route.tproj/route.c (monitor(), print_rtmsg(), pmsg_common(), pmsg_addrs(),
 * print_getmsg()) and checked against real captures quoted in the fixture file.
 *
 * One message is a block of lines (pmsg_addrs prints one " %s" per sockaddr, so an empty one —
 * an IFP without a name — leaves two spaces: split on single spaces, never on runs):
 *
 *   got message of size 164 on Tue May 19 12:20:05 2020
 *   RTM_DELETE: Delete Route: len 164, pid: 62, seq 263, errno 0, ifscope 6, flags:<GATEWAY,…>
 *   locks:  inits:
 *   sockaddrs: <DST,GATEWAY,NETMASK,IFP,IFA>
 *    default 11.136.160.254 default en1:e4.ce.8f.23.c5.de 11.136.160.44
 *
 * RTM_IFINFO carries no sockaddrs: its one line ("…: len 112, if# 5, flags:<UP,…,RUNNING,…>")
 * is the whole message. RTM_NEWADDR/DELADDR: "metric 0, flags:<…>", then NETMASK,IFP,IFA,BRD.
 * Ignored, as in tailscale's and n0's monitors: RTM_MISS and RTM_LOSING (the fate of packets,
 * not table changes; RTM_MISS arrives for every failed lookup), RTM_GET, RTM_RESOLVE and the
 * multicast membership messages; cloned host routes (ARP/ND entries, WASCLONED) are marked.
 *
 * Known limit (from route.c, to check on a Mac): stdout is a pipe, so it is block-buffered, and
 * route(8) flushes only at the end of a message with sockaddrs (pmsg_addrs). An RTM_IFINFO alone
 * (carrier lost, nothing else changed) then waits in route's buffer until the next route or
 * address message. A Wi-Fi or cable loss is followed by configd removing the address and routes
 * (RTM_DELADDR, RTM_DELETE), which flush it. Running route under a pty (`script -q /dev/null
 * route -n monitor`) would make it line-buffered; untested, so not done.
 */
import type { LinkEvent, NetEvent, RouteEvent } from './net-events'
import { ipFamily, stripZone } from './net-events'

export const ROUTE_MONITOR_ARGV: readonly string[] = ['route', '-n', 'monitor']
export function routeGetArgvDarwin(address: string): string[] {
  return ['route', '-n', 'get', ...(address.includes(':') ? ['-inet6'] : []), address]
}
export function ifconfigArgv(dev: string): string[] {
  return ['ifconfig', dev]
}

const ROUTE_CHANGES: Record<string, boolean> = { RTM_ADD: false, RTM_CHANGE: false, RTM_DELETE: true }

interface Pending {
  readonly type: string
  readonly rest: string
  names?: string[]
}

/** Stateful: feed it stdout lines in order; it returns the events of completed messages. */
export class DarwinRouteMonitorParser {
  private pending: Pending | undefined

  push(raw: string): NetEvent[] {
    const line = raw.replace(/\r$/, '')
    if (line.startsWith('got message of size')) {
      this.pending = undefined
      return []
    }
    if (line.startsWith('routing message version')) return [{ kind: 'gap', why: line.trim() }]
    const head = /^(RTM_[A-Z0-9_]+): [^:]*: len \d+,\s*(.*)$/.exec(line)
    if (head) {
      this.pending = undefined
      if (head[1] === 'RTM_IFINFO') return [ifInfo(head[2])]
      if (head[1] in ROUTE_CHANGES || head[1] === 'RTM_NEWADDR' || head[1] === 'RTM_DELADDR') {
        this.pending = { type: head[1], rest: head[2] }
      }
      return []
    }
    const p = this.pending
    if (!p) return []
    const names = /^sockaddrs: <([^>]*)>/.exec(line)
    if (names) {
      p.names = names[1].split(',').map((s) => s.trim())
      return []
    }
    if (p.names && line.startsWith(' ')) {
      this.pending = undefined
      const values = line.slice(1).split(' ')
      if (values.length !== p.names.length) return [{ kind: 'gap', why: `unparsed ${p.type}` }]
      const sa = new Map(p.names.map((n, i) => [n, values[i]]))
      const ev = p.type in ROUTE_CHANGES ? routeEvent(p, sa) : addrEvent(p, sa)
      return [ev ?? { kind: 'gap', why: `unparsed ${p.type}` }]
    }
    return []
  }
}

function flagsOf(rest: string): Set<string> {
  const m = /flags:\s*<([^>]*)>/.exec(rest)
  return new Set((m ? m[1] : '').split(',').map((s) => s.trim()).filter(Boolean))
}

function ifInfo(rest: string): LinkEvent {
  const flags = flagsOf(rest)
  const index = Number(/if# (\d+)/.exec(rest)?.[1] ?? 0)
  return { kind: 'link', deleted: false, index, up: flags.has('UP'), running: flags.has('UP') && flags.has('RUNNING') }
}

function routeEvent(p: Pending, sa: Map<string, string>): RouteEvent | undefined {
  const flags = flagsOf(p.rest)
  const dst = sa.get('DST')
  if (dst === undefined) return undefined
  const gw = sa.get('GATEWAY')
  const gwIp = gw && ipFamily(stripZone(gw)) ? gw : undefined
  let family: 4 | 6 | undefined
  let network: string
  if (dst === 'default') {
    // routename() says "default" for 0.0.0.0 and for an empty sockaddr (family unknown).
    family = gwIp ? ipFamily(stripZone(gwIp)) : undefined
    network = family === 6 ? '::' : '0.0.0.0'
  } else {
    network = stripZone(dst)
    family = ipFamily(network)
    if (!family) return undefined
  }
  const max = family === 6 ? 128 : 32
  const mask = sa.get('NETMASK')
  const prefixLen = flags.has('HOST') || mask === undefined ? (dst === 'default' ? 0 : max) : maskLength(mask)
  if (prefixLen === undefined) return undefined
  const ifp = sa.get('IFP')
  return {
    kind: 'route',
    deleted: ROUTE_CHANGES[p.type],
    family,
    type: flags.has('BLACKHOLE') ? 'blackhole' : flags.has('REJECT') ? 'unreachable' : 'unicast',
    network,
    prefixLen,
    dev: ifp ? ifp.split(':')[0] || undefined : undefined,
    via: flags.has('GATEWAY') ? gwIp : undefined,
    cloned: flags.has('WASCLONED') || flags.has('LLINFO'),
  }
}

function addrEvent(p: Pending, sa: Map<string, string>): NetEvent | undefined {
  const ifa = sa.get('IFA')
  const address = ifa ? stripZone(ifa) : ''
  const family = ipFamily(address)
  if (!family) return undefined
  const dev = sa.get('IFP')?.split(':')[0] || (ifa?.includes('%') ? ifa.split('%')[1] : undefined)
  return { kind: 'addr', deleted: p.type === 'RTM_DELADDR', dev, family, address }
}

/** "255.255.255.0" → 24, "ffff:ffff:ffff:ffff::" → 64, "default" (empty mask) → 0. */
export function maskLength(mask: string): number | undefined {
  if (mask === 'default' || mask === '') return 0
  let bytes: number[]
  if (/^\d+\.\d+\.\d+\.\d+$/.test(mask)) bytes = mask.split('.').map(Number)
  else if (ipFamily(mask) === 6) bytes = ipv6Bytes(mask)
  else return undefined
  let bits = 0
  let ended = false
  for (const b of bytes) {
    for (let i = 7; i >= 0; i--) {
      const set = (b >> i) & 1
      if (set && ended) return undefined // not contiguous
      if (set) bits++
      else ended = true
    }
  }
  return bits
}

function ipv6Bytes(a: string): number[] {
  const [head, tail = ''] = a.includes('::') ? a.split('::') : [a, '']
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return groups.flatMap((g) => [(parseInt(g, 16) >> 8) & 0xff, parseInt(g, 16) & 0xff])
}

/** What `route -n get ADDR` says (print_getmsg): interface and gateway. */
export function parseRouteGetDarwin(out: string): { dev: string; via?: string } | undefined {
  const kv = new Map<string, string>()
  for (const line of out.split('\n')) {
    const m = /^\s*([a-z ]+):\s*(.*)$/.exec(line)
    if (m) kv.set(m[1].trim(), m[2].trim())
  }
  const dev = kv.get('interface')
  if (!dev) return undefined
  const gw = kv.get('gateway')
  return { dev, via: gw && ipFamily(stripZone(gw)) ? gw : undefined }
}

/** `route get` failures that mean "no route" ("not in table", "network is unreachable"). */
export function isNoRouteErrorDarwin(stderr: string): boolean {
  return /not in table|unreachable|no route/i.test(stderr)
}

/** `ifconfig DEV`: administratively up, and running with an active medium. */
export function parseIfconfigState(out: string): { up: boolean; running: boolean } | undefined {
  const flags = /flags=[0-9a-f]+<([^>]*)>/i.exec(out)
  if (!flags) return undefined
  const set = new Set(flags[1].split(','))
  const inactive = /^\s*status: inactive/m.test(out)
  return { up: set.has('UP'), running: set.has('UP') && set.has('RUNNING') && !inactive }
}
