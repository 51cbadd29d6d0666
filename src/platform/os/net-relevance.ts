/**
 * Which kernel notifications can change the path to the bastion. Pure: given the event, the
 * bastion's address, the current path (from `ip route get`) and the last known link states,
 * it answers
 *   none — cannot matter: a route that does not cover the bastion (the tunnelled networks,
 *          docker bridges, a VPN's split routes), another interface, the other address family;
 *   soft — may matter: look the route up again and report a change only if it differs
 *          (a covering route came or went, an address changed on our interface);
 *   hard — the path broke even if the route lookup still answers the same: the interface lost
 *          carrier or went down, came back, disappeared, or lost the source address. The TCP
 *          connection of the old path is then suspect whatever the lookup says.
 * Over-inclusion costs one `ip route get`; under-inclusion costs up to a keepalive timeout.
 */
import type { BastionPath, LinkState, NetEvent } from './net-events'
import { networkContains } from './net-events'

export type Relevance = { readonly level: 'none' } | { readonly level: 'soft' | 'hard'; readonly reason: string }

export interface RelevanceContext {
  /** The bastion's IP address (the peer of the SSH connection, or the first jump host). */
  readonly bastion: string
  readonly family: 4 | 6
  /** Current path; undefined while there is no route (then anything that adds one matters). */
  readonly path: BastionPath | undefined
  /** Last seen state per interface index. */
  readonly links: ReadonlyMap<number, LinkState>
  /** Our own devices (the TUN device of `--method tun`): their routes are the tunnelled ones. */
  readonly ignoreDevs?: ReadonlySet<string>
  /** Our own routing tables (tun backend's policy table): throw routes for excludes live there. */
  readonly ignoreTables?: ReadonlySet<string>
}

const NONE: Relevance = { level: 'none' }
/** Kernel-maintained entries of the local table: they follow addresses, which we watch. */
const LOCAL_TYPES = new Set(['local', 'broadcast', 'multicast', 'anycast'])

export function classifyNetEvent(ev: NetEvent, ctx: RelevanceContext): Relevance {
  switch (ev.kind) {
    case 'gap':
      return { level: 'soft', reason: ev.why }
    case 'link':
      return classifyLink(ev, ctx)
    case 'addr': {
      if (ev.family !== ctx.family || (ev.dev && ctx.ignoreDevs?.has(ev.dev))) return NONE
      const verb = ev.deleted ? 'removed' : 'added'
      if (!ctx.path) return ev.deleted ? NONE : { level: 'soft', reason: `address ${ev.address} ${verb}` }
      if (!onPathInterface(ev.index, ev.dev, ctx.path)) return NONE
      if (ev.deleted && ev.address === ctx.path.src) return { level: 'hard', reason: `source address ${ev.address} removed from ${ctx.path.dev}` }
      return { level: 'soft', reason: `address ${ev.address} ${verb} on ${ctx.path.dev}` }
    }
    case 'route': {
      if (ev.family !== undefined && ev.family !== ctx.family) return NONE
      if (ev.cloned || LOCAL_TYPES.has(ev.type)) return NONE
      if ((ev.dev && ctx.ignoreDevs?.has(ev.dev)) || (ev.table && ctx.ignoreTables?.has(ev.table))) return NONE
      const what = `route ${ev.type === 'unicast' ? '' : ev.type + ' '}${ev.network}/${ev.prefixLen}${ev.dev ? ' dev ' + ev.dev : ''} ${ev.deleted ? 'deleted' : 'added'}`
      if (ev.family === undefined ? ev.prefixLen === 0 : networkContains(ev.network, ev.prefixLen, ctx.bastion)) {
        return { level: 'soft', reason: what }
      }
      // The connected route of our gateway's subnet: without it the gateway is unreachable.
      const via = ctx.path?.via
      if (ev.deleted && via && ev.family !== undefined && networkContains(ev.network, ev.prefixLen, via)) {
        return { level: 'soft', reason: what }
      }
      return NONE
    }
  }
}

function classifyLink(ev: Extract<NetEvent, { kind: 'link' }>, ctx: RelevanceContext): Relevance {
  if (ev.name && ctx.ignoreDevs?.has(ev.name)) return NONE
  const usable = ev.up && ev.running && !ev.deleted
  const path = ctx.path
  if (!path || !onPathInterface(ev.index, ev.name, path)) {
    // No route now: an interface coming up may bring one (DHCP, a static config, a VPN).
    if (!path && usable && !wasUsable(ctx.links.get(ev.index))) return { level: 'soft', reason: `link ${ev.name ?? '#' + ev.index} up` }
    return NONE
  }
  const name = ev.name ?? path.dev
  if (ev.deleted) return { level: 'hard', reason: `link ${name} removed` }
  // The last route lookup read this link's state too (path.up). When the event says the same,
  // that state was already looked up and reported: repeats, MTU or promiscuity changes, and
  // the kernel's late RTM_NEWLINK for a carrier loss an address event had already shown.
  if (usable === path.up) return NONE
  return { level: 'hard', reason: `link ${name} ${usable ? 'up' : ev.up ? 'lost carrier' : 'down'}` }
}

function wasUsable(s: LinkState | undefined): boolean {
  return s !== undefined && s.up && s.running
}

/** The event's interface is the path's: by index when both know it, else by name. */
function onPathInterface(index: number | undefined, name: string | undefined, path: BastionPath): boolean {
  if (index !== undefined && path.index !== undefined) return index === path.index
  return name !== undefined && name === path.dev
}
