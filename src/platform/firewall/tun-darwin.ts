/**
 * `--method tun` on macOS: addresses and routes for a utun interface (utun-darwin.ts).
 * NOT YET RUN ON A REAL MAC; the argv follow wg-quick's darwin.bash (`route -q -n add -inet
 * <cidr> -interface <utun>`) and ifconfig(8)/route(8).
 *
 * Privileges: utun needs root to create (CTL_FLAG_PRIVILEGED) and lives exactly as long as
 * the creating socket. Handing that socket from the helper to the unprivileged main process
 * would need sendmsg(SCM_RIGHTS)/recvmsg through FFI on a Unix socket of our own (Node's IPC
 * only passes TCP/pipe handles, and sudo closes inherited descriptors), so on macOS the tunnel
 * runs as root for --method tun: the main process opens the utun, the (root) helper applies
 * this plan. Crash safety comes from the kernel: when the process dies the socket closes, the
 * interface is detached and every route through it removed with it (xnu
 * bsd/net/dlil_subr.c:651 if_rtproto_del); the journal's `route delete`s then find nothing.
 *
 * No policy routing on macOS: an exclude inside an include (the bastion inside 10.0.0.0/8)
 * can only keep its normal path as a more specific route through the original next hop, which
 * must be looked up first (`route -n get`, parseRouteGet) and passed in as `via`. An exclude
 * that overlaps an include and has no known next hop is refused rather than silently routed
 * into the tunnel (for the bastion, that would loop the SSH connection into itself).
 */
import { cidrsOverlap, formatCidr, hostCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { includedFamilies } from './naming'
import type { CaptureSpec, Plan } from './types'

/** utun addresses (point-to-point: ours and the peer's), the same /30 and /126 as on Linux. */
export const UTUN_ADDR4 = { local: '169.254.77.1', peer: '169.254.77.2', netmask: '255.255.255.252' } as const
export const UTUN_ADDR6 = { local: 'fd7a:5354::1', prefixlen: 126 } as const
/**
 * MTU: 65532, not 65535 as on Linux. Every frame carries the 4-byte family header and libuv
 * reads into 64 KiB buffers; a 65535-byte packet would be a 65539-byte datagram, cut short by
 * the read. (The kernel side takes it: non-netif utun sets any MTU, if_utun.c:2846-2848.)
 */
export const UTUN_MTU = 65532

/** Where an excluded network goes instead of the utun: its original next hop. */
export type RouteVia = { readonly gateway: string } | { readonly interface: string }

const FAMILY_FLAG: Record<4 | 6, string> = { 4: '-inet', 6: '-inet6' }

function assertUtunName(device: string): void {
  if (!/^utun\d{1,5}$/.test(device)) throw new TunnelError('INTERNAL', `not a utun interface name: "${device}"`)
}

function viaArgs(via: RouteVia): string[] {
  return 'gateway' in via ? [via.gateway] : ['-interface', via.interface]
}

/**
 * Pure: the argv that address `device`, route the spec's includes (and captured nameservers)
 * into it, and keep overlapping excludes on their original next hop (`via`, keyed by the
 * exclude's formatted CIDR). Exclude routes go in before the include routes, so the bastion
 * never passes through the tunnel even for a moment; the revert deletes in reverse order.
 * Excludes whose next hop is lo0 (this machine's own addresses) need no route: local
 * addresses are delivered locally whatever the table says.
 */
export function utunPlan(spec: CaptureSpec, device: string, via: ReadonlyMap<string, RouteVia> = new Map()): Plan {
  assertUtunName(device)
  const families = includedFamilies(spec)
  const apply: string[][] = []
  if (families.includes(4)) {
    apply.push(['ifconfig', device, 'inet', UTUN_ADDR4.local, UTUN_ADDR4.peer, 'netmask', UTUN_ADDR4.netmask, 'mtu', String(UTUN_MTU), 'up'])
  } else {
    apply.push(['ifconfig', device, 'mtu', String(UTUN_MTU), 'up'])
  }
  if (families.includes(6)) apply.push(['ifconfig', device, 'inet6', UTUN_ADDR6.local, 'prefixlen', String(UTUN_ADDR6.prefixlen)])
  const dnsHosts = spec.dns ? spec.dns.servers.map((s) => hostCidr(s)) : []
  const routed = [...spec.include, ...dnsHosts]
  const seen = new Set<string>()
  const excludes: string[][] = []
  for (const e of spec.exclude) {
    if (!routed.some((r) => cidrsOverlap(e, r))) continue
    const key = formatCidr(e)
    if (seen.has(key)) continue
    seen.add(key)
    const v = via.get(key)
    if (!v) {
      throw new TunnelError('FW_UNSUPPORTED', `--method tun on macOS: ${key} is excluded but lies inside a tunnelled network, and its normal next hop is unknown`, {
        hint: 'macOS has no policy routing: the exclude needs a more specific route through its original gateway (look it up with `route -n get`), or leave it out of the tunnelled networks',
      })
    }
    if ('interface' in v && v.interface === 'lo0') continue
    excludes.push(['route', '-q', '-n', 'add', FAMILY_FLAG[e.family], key, ...viaArgs(v)])
  }
  const includes: string[][] = []
  const added = new Set<string>()
  for (const r of routed) {
    const key = formatCidr(r)
    // An exclude of the very same network wins (as in orderedRules): no route at all.
    if (added.has(key) || spec.exclude.some((e) => formatCidr(e) === key)) continue
    added.add(key)
    includes.push(['route', '-q', '-n', 'add', FAMILY_FLAG[r.family], key, '-interface', device])
  }
  apply.push(...excludes, ...includes)
  // Includes go first (traffic stops entering the utun), then the exclude routes.
  const del = (a: string[]): string[] => a.map((x, i) => (i === 3 ? 'delete' : x))
  return { apply, revert: [...includes.map(del), ...excludes.map(del)] }
}

/**
 * The next hop in `route -n get <address>` output ("gateway: 192.168.1.1", "interface: en0");
 * an on-link destination has no gateway line and goes by its interface. undefined when the
 * output names neither (no route to it).
 */
export function parseRouteGet(stdout: string): RouteVia | undefined {
  const field = (k: string): string | undefined => new RegExp(`^\\s*${k}:\\s*(\\S+)\\s*$`, 'm').exec(stdout)?.[1]
  const gw = field('gateway')
  const ifname = field('interface')
  // On-link routes may print the gateway as a link address ("link#4") or the interface name.
  if (gw && /^[0-9a-fA-F:.]+(%\S+)?$/.test(gw) && (gw.includes('.') || gw.includes(':'))) return { gateway: gw }
  if (ifname && /^[a-z][a-z0-9]{0,14}$/.test(ifname)) return { interface: ifname }
  return undefined
}
