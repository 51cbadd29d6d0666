/**
 * What the kernel's route/address/link notifications say, reduced to what matters for "can the
 * path to the bastion have changed": one shape for Linux (`ip monitor`) and macOS (`route
 * monitor`), so the relevance rules (net-relevance.ts) are written and tested once.
 */
import { cidrContains, tryParseCidr } from '../../config/cidr'

/** A network interface changed (flags, name, or it appeared / went away). */
export interface LinkEvent {
  readonly kind: 'link'
  readonly deleted: boolean
  /** Kernel interface index: the one identity that survives a rename. */
  readonly index: number
  /** Name, when the notification carries one (macOS RTM_IFINFO does not). */
  readonly name?: string
  /** Administratively up (IFF_UP). */
  readonly up: boolean
  /** Carrier / operational (IFF_RUNNING: Linux prints NO-CARRIER when up and not running). */
  readonly running: boolean
}

/** An address was added to, changed on (lifetimes) or removed from an interface. */
export interface AddrEvent {
  readonly kind: 'addr'
  readonly deleted: boolean
  /** Interface index (Linux prints it; macOS does not). */
  readonly index?: number
  /** Interface name: on Linux, from `ip monitor`'s start-time cache (stale after a rename). */
  readonly dev?: string
  readonly family: 4 | 6
  readonly address: string
}

/** A route was added, replaced or deleted. */
export interface RouteEvent {
  readonly kind: 'route'
  readonly deleted: boolean
  /** Undefined when the line does not tell (a Linux `default dev X` without a gateway). */
  readonly family?: 4 | 6
  /** unicast, local, broadcast, multicast, unreachable, blackhole, prohibit, throw, … */
  readonly type: string
  /** Network address (host bits cleared) and prefix length; default is 0.0.0.0/0 or ::/0. */
  readonly network: string
  readonly prefixLen: number
  readonly dev?: string
  readonly via?: string
  readonly table?: string
  /** macOS: a host route cloned by the kernel (ARP/ND entry, per-destination clone): noise. */
  readonly cloned?: boolean
}

/** The monitor says it may have missed notifications (netlink overflow, a restart): re-check. */
export interface GapEvent {
  readonly kind: 'gap'
  readonly why: string
}

export type NetEvent = LinkEvent | AddrEvent | RouteEvent | GapEvent

/** How this machine reaches the bastion right now (`ip route get` / `route -n get`). */
export interface BastionPath {
  /** Outgoing interface. */
  readonly dev: string
  /** Its kernel index, when known: matches link and address events across renames. */
  readonly index?: number
  /** Gateway, absent for an on-link destination. */
  readonly via?: string
  /** Source address the kernel picks (Linux: from the route lookup; macOS: the interface's). */
  readonly src?: string
  /** The interface is up and has carrier. A route through a link without carrier may remain. */
  readonly up: boolean
}

/** One interface's state as last seen, to tell a real up/down transition from a repeat. */
export interface LinkState {
  readonly index: number
  readonly name?: string
  readonly up: boolean
  readonly running: boolean
}

/** 4 or 6 for an IP literal (no prefix, no zone), undefined otherwise. */
export function ipFamily(s: string): 4 | 6 | undefined {
  const c = tryParseCidr(s)
  return c && c.prefix === (c.family === 4 ? 32 : 128) && !s.includes('/') ? c.family : undefined
}

/** Whether network/prefixLen contains address (same family). Zones (%en0) are ignored. */
export function networkContains(network: string, prefixLen: number, address: string): boolean {
  const c = tryParseCidr(`${stripZone(network)}/${prefixLen}`)
  return c !== undefined && cidrContains(c, stripZone(address))
}

/** "fe80::1%en0" → "fe80::1". */
export function stripZone(address: string): string {
  const i = address.indexOf('%')
  return i < 0 ? address : address.slice(0, i)
}

/** Same route to the bastion: interface, gateway, source and link state. */
export function samePath(a: BastionPath | undefined, b: BastionPath | undefined): boolean {
  if (!a || !b) return a === b
  return a.dev === b.dev && a.via === b.via && a.src === b.src && a.up === b.up
}

/** "eth0 via 192.168.1.1 src 192.168.1.20" or "no route", for logs and reasons. */
export function describePath(p: BastionPath | undefined): string {
  if (!p) return 'no route'
  return [p.dev, p.via && `via ${p.via}`, p.src && `src ${p.src}`, !p.up && '(link down)'].filter(Boolean).join(' ')
}
