/**
 * `--auto-nets`, the choice: which of the bastion's routes (parsed by remote-routes.ts) to
 * tunnel. Pure: the caller passes what it knows (the routes, the address it dialled, this
 * machine's own networks) and applies the user's excludes afterwards (they win).
 *
 * Kept: every unicast network the bastion reaches, both families. Dropped, each with a reason
 * for `-v`: the default route and anything broader than /8 (0.0.0.0/1 + 128.0.0.0/1 is the
 * default route in disguise), reject routes (blackhole, unreachable, prohibit, throw), broadcast,
 * multicast, loopback, link-local and reserved ranges, links that are down, the bastion's own
 * addresses, the bastion's link to us (the attached network holding the address we reach it at),
 * this machine's own networks, duplicates and networks inside another chosen one. A chosen network that holds one of this machine's networks or the link to
 * us is kept, and that part is returned as an exclude: tunnelling it would cut this machine off
 * its own LAN or send the SSH connection into itself.
 */
import ipaddr from 'ipaddr.js'
import { formatCidr, isIpLiteral, parseCidr, tryParseCidr, type Cidr } from './cidr'
import { CidrSet, cidrWithin } from './cidr-set'
import type { BastionRoutes, RemoteRoute } from './remote-routes'

export type DropReason =
  | 'default' // 0.0.0.0/0, ::/0
  | 'too-broad' // prefix shorter than minPrefix
  | 'reject' // blackhole, unreachable, prohibit, throw, netstat's `!`/R/B
  | 'not-unicast' // broadcast, multicast, anycast, nat route types
  | 'neighbor' // a BSD ARP/NDP cache entry
  | 'loopback'
  | 'link-local'
  | 'multicast' // a multicast range with a unicast route type
  | 'reserved' // 0.0.0.0/8, 240.0.0.0/4, ::/96, ::ffff:0:0/96
  | 'link-down'
  | 'bastion-address' // an address of the bastion itself
  | 'link-to-us' // the network between us and the bastion
  | 'local-network' // inside one of this machine's networks
  | 'duplicate' // the same network again (another metric or next hop)
  | 'covered' // inside another chosen network
  | 'limit' // more than maxNets networks

/** A network to tunnel and the route it came from. */
export interface AutoNet {
  readonly net: Cidr
  readonly route: RemoteRoute
}

/** A route not tunnelled, and why (`detail` is one line built from parsed values only). */
export interface DroppedRoute {
  readonly net: Cidr
  readonly reason: DropReason
  readonly detail: string
  readonly route: RemoteRoute
}

/** A part of a chosen network that must stay out of the tunnel (to add to the excludes). */
export interface AutoNetExclude {
  readonly net: Cidr
  readonly reason: 'link-to-us' | 'local-network'
  readonly detail: string
}

export interface AutoNetsChoice {
  /** In the bastion's order: IPv4, then IPv6. */
  readonly chosen: readonly AutoNet[]
  /** Every other route, in the bastion's order. */
  readonly dropped: readonly DroppedRoute[]
  readonly excludes: readonly AutoNetExclude[]
  /** The addresses taken as where we reach the bastion (for `-v`). */
  readonly linkAddresses: readonly string[]
}

export interface AutoNetsInput {
  readonly routes: BastionRoutes
  /**
   * The bastion's addresses as this machine dials them (the socket's remote address, or what the
   * bastion's name resolves to here). Empty when unknown (reached through a jump host): then the
   * address the bastion saw the connection arrive at (SSH_CONNECTION) stands in. Non-IP entries
   * are ignored.
   */
  readonly bastionAddresses: readonly string[]
  /** This machine's own networks (its interface addresses with their prefix lengths). */
  readonly localNetworks: readonly Cidr[]
  /** Shortest prefix accepted, both families (default AUTO_NETS_MIN_PREFIX). */
  readonly minPrefix?: number
  /** Most networks chosen (default MAX_AUTO_NETS); the rest are dropped as 'limit'. */
  readonly maxNets?: number
}

export const AUTO_NETS_MIN_PREFIX = 8
export const MAX_AUTO_NETS = 256

interface Special {
  readonly net: Cidr
  readonly reason: DropReason
  readonly what: string
}

// Order matters: ::1 (loopback) lies inside ::/96.
const SPECIAL: readonly Special[] = (
  [
    ['127.0.0.0/8', 'loopback', 'loopback'],
    ['::1/128', 'loopback', 'loopback'],
    ['169.254.0.0/16', 'link-local', 'link-local'],
    ['fe80::/10', 'link-local', 'link-local'],
    ['224.0.0.0/4', 'multicast', 'multicast range'],
    ['ff00::/8', 'multicast', 'multicast range'],
    ['0.0.0.0/8', 'reserved', '"this network" (0.0.0.0/8)'],
    ['240.0.0.0/4', 'reserved', 'reserved range (240.0.0.0/4, broadcast)'],
    ['::/96', 'reserved', 'IPv4-compatible range (::/96)'],
    ['::ffff:0:0/96', 'reserved', 'IPv4-mapped range (::ffff:0:0/96)'],
  ] as const
).map(([net, reason, what]) => ({ net: parseCidr(net), reason, what }))

type Verdict = readonly [DropReason, string] | undefined

/** Chooses the networks to tunnel from the bastion's routes. Never throws. */
export function chooseAutoNets(input: AutoNetsInput): AutoNetsChoice {
  const minPrefix = input.minPrefix ?? AUTO_NETS_MIN_PREFIX
  const maxNets = input.maxNets ?? MAX_AUTO_NETS
  const linkAddresses = reachedAt(input)
  const ctx: Context = {
    minPrefix,
    own: new Set(input.routes.ownAddresses),
    links: linkAddresses.map(parseCidr),
    local: input.localNetworks,
  }
  const dropped: DroppedRoute[] = []
  const linkNets = new CidrSet<Cidr>()
  const survivors: RemoteRoute[] = []
  for (const route of input.routes.routes) {
    const verdict = judge(route, ctx)
    if (!verdict) {
      survivors.push(route)
      continue
    }
    dropped.push({ net: route.net, reason: verdict[0], detail: verdict[1], route })
    if (verdict[0] === 'link-to-us') linkNets.add(route.net, route.net)
  }
  // Routes inside the link to us (macOS's /32 cloning route of the gateway) are on it too.
  const offLink = survivors.filter((route) => {
    const link = linkNets.holder(route.net)
    if (link) dropped.push({ net: route.net, reason: 'link-to-us', detail: `on the bastion's link to us (${formatCidr(link)})`, route })
    return !link
  })
  const chosen = merge(offLink, dropped, maxNets)
  const protectedNets: AutoNetExclude[] = [
    ...input.localNetworks.map((net) => ({ net, reason: 'local-network' as const, detail: 'a network of this machine' })),
    ...dropped.filter((d) => d.reason === 'link-to-us').map((d) => ({ net: d.net, reason: 'link-to-us' as const, detail: "the bastion's link to us" })),
    ...ctx.links.map((net) => ({ net, reason: 'link-to-us' as const, detail: 'where we reach the bastion' })),
  ]
  return { chosen, dropped: sortByLine(dropped), excludes: excludesWithin(chosen, protectedNets), linkAddresses }
}

/**
 * Where we reach the bastion: the addresses we dial. Only when there are none (a jump host
 * reaches it for us) the address the bastion saw the connection arrive at. When we dial a
 * different address than the bastion sees, a NAT is in between: the bastion's network behind
 * it is not ours to reach directly, so it is no link to us (a cloud VPC behind a public IP).
 */
function reachedAt(input: AutoNetsInput): string[] {
  const dialled = unique(input.bastionAddresses.map(address))
  if (dialled.length > 0) return dialled
  return unique([address(input.routes.sshConnection?.server)])
}

interface Context {
  readonly minPrefix: number
  readonly own: ReadonlySet<string>
  /** Where we reach the bastion, as /32 or /128 networks. */
  readonly links: readonly Cidr[]
  readonly local: readonly Cidr[]
}

function judge(r: RemoteRoute, ctx: Context): Verdict {
  const n = r.net
  if (n.prefix === 0) return ['default', 'the default route']
  switch (r.kind) {
    case 'blackhole':
    case 'unreachable':
    case 'prohibit':
    case 'throw':
    case 'reject':
      return ['reject', `${r.kind} route: the bastion does not forward there`]
    case 'local':
      return ['bastion-address', 'an address of the bastion itself']
    case 'neighbor':
      return ['neighbor', 'a neighbour cache entry (ARP/NDP), not a network']
    case 'broadcast':
    case 'multicast':
    case 'anycast':
    case 'nat':
      return ['not-unicast', `${r.kind} route`]
    case 'unicast':
      break
  }
  const special = SPECIAL.find((s) => cidrWithin(n, s.net))
  if (special) return [special.reason, special.what]
  // 0.0.0.0/1 + 128.0.0.0/1 (OpenVPN's def1) is the default route in disguise.
  if (n.prefix < ctx.minPrefix) return ['too-broad', `broader than /${ctx.minPrefix}: a share of the Internet, not a private network`]
  if (r.linkDown) return ['link-down', 'its link is down on the bastion']
  const host = n.prefix === (n.family === 4 ? 32 : 128)
  if (host && ctx.own.has(n.address)) return ['bastion-address', 'an address of the bastion itself']
  const link = ctx.links.find((a) => cidrWithin(a, n))
  if (link !== undefined && (r.connected || host)) return ['link-to-us', `the bastion's link to us (holds ${link.address})`]
  const local = ctx.local.find((l) => cidrWithin(n, l))
  if (local) return ['local-network', `inside ${formatCidr(local)}, a network of this machine`]
  return undefined
}

/**
 * Keeps one route per network and drops networks inside a broader kept one (the broader route
 * already sends them through the tunnel); the first route in the bastion's order wins among
 * equals. Returns the kept ones in the bastion's order, at most maxNets.
 */
function merge(survivors: readonly RemoteRoute[], dropped: DroppedRoute[], maxNets: number): AutoNet[] {
  const broadFirst = survivors.map((route, i) => ({ route, i })).sort((a, b) => a.route.net.prefix - b.route.net.prefix || a.i - b.i)
  // Broadest first, so a network meets every kept one that could hold it.
  const kept = new CidrSet<RemoteRoute>()
  const keptAt = new Set<number>()
  for (const { route, i } of broadFirst) {
    const holder = kept.holder(route.net)
    if (holder === undefined) {
      kept.add(route.net, route)
      keptAt.add(i)
    } else if (holder.net.prefix === route.net.prefix) {
      dropped.push({ net: route.net, reason: 'duplicate', detail: `also on line ${holder.line}`, route })
    } else {
      dropped.push({ net: route.net, reason: 'covered', detail: `inside ${formatCidr(holder.net)} (line ${holder.line})`, route })
    }
  }
  const chosen: AutoNet[] = []
  survivors.forEach((route, i) => {
    if (!keptAt.has(i)) return
    if (chosen.length < maxNets) chosen.push({ net: route.net, route })
    else dropped.push({ net: route.net, reason: 'limit', detail: `more than ${maxNets} networks`, route })
  })
  return chosen
}

/** The protected networks that lie strictly inside a chosen one, minus those inside another. */
function excludesWithin(chosen: readonly AutoNet[], candidates: readonly AutoNetExclude[]): AutoNetExclude[] {
  const chosenSet = new CidrSet<true>()
  for (const c of chosen) chosenSet.add(c.net, true)
  const inside = candidates.filter((p) => chosenSet.holder(p.net, true)).sort((a, b) => a.net.prefix - b.net.prefix)
  const out = new CidrSet<AutoNetExclude>()
  const list: AutoNetExclude[] = []
  for (const p of inside) {
    if (out.holder(p.net) !== undefined) continue
    out.add(p.net, p)
    list.push(p)
  }
  return list
}

function sortByLine(dropped: DroppedRoute[]): DroppedRoute[] {
  return dropped.map((d, i) => ({ d, i })).sort((a, b) => a.d.route.line - b.d.route.line || a.i - b.i).map((x) => x.d)
}

/** An IP literal in canonical form (IPv4-mapped IPv6 as IPv4), or undefined. */
function address(s: string | undefined): string | undefined {
  if (s === undefined || !isIpLiteral(s)) return undefined
  const c = tryParseCidr(ipaddr.process(s).toString())
  return c && c.prefix === (c.family === 4 ? 32 : 128) ? c.address : undefined
}

function unique(list: readonly (string | undefined)[]): string[] {
  return [...new Set(list.filter((a): a is string => a !== undefined))]
}

/** One line for `-v`: "10.30.0.0/16 via 10.20.0.254 dev lan1 proto static metric 50". */
export function describeRoute(r: RemoteRoute): string {
  const parts = [r.kind === 'unicast' ? '' : r.kind, formatCidr(r.net)]
  if (r.gateway !== undefined) parts.push('via', r.gateway)
  if (r.dev !== undefined) parts.push('dev', r.dev)
  if (r.proto !== undefined) parts.push('proto', r.proto)
  if (r.metric !== undefined) parts.push('metric', String(r.metric))
  if (r.linkDown) parts.push('linkdown')
  return parts.filter((p) => p !== '').join(' ')
}
