/**
 * Shared pieces of the bastion route-table parsers (remote-routes-ip.ts for iproute2,
 * remote-routes-table.ts for netstat/route tables): the parsed route and the defensive helpers
 * every line goes through.
 *
 * The text comes from the far side, an attacker in our threat model. So: each line is judged on
 * its own and skipped when it does not fit (never an exception), lines and counts are bounded,
 * every address is re-parsed by cidr.ts (ipaddr.js), and no text from the output is kept except
 * names that pass a strict pattern (they end up on the user's terminal at -v).
 */
import { tryParseCidr, type Cidr } from './cidr'

/** What a route does with matching packets (iproute2's route types; BSD flags map onto them). */
export type RouteKind =
  | 'unicast'
  | 'local' // delivered to the bastion itself (iproute2 `local`, BSD host routes on lo0)
  | 'broadcast'
  | 'multicast'
  | 'anycast'
  | 'nat'
  | 'blackhole'
  | 'unreachable'
  | 'prohibit'
  | 'throw'
  | 'reject' // netstat's `!`/R flag: unreachable or prohibit, the table does not say which
  | 'neighbor' // a BSD ARP/NDP cache entry listed as a host route (gateway is a MAC address)

/** Which tool printed the line. */
export type RouteFormat = 'ip' | 'net-tools' | 'bsd'

/** One route of the bastion, as far as its output told us. */
export interface RemoteRoute {
  readonly net: Cidr
  readonly kind: RouteKind
  /** First next hop (IP literal, scope removed), when the route goes through a router. */
  readonly gateway: string | undefined
  /** Directly attached: no next hop (iproute2 `scope link`, net-tools gateway 0.0.0.0, BSD link#N). */
  readonly connected: boolean
  /** Interface name, only when it passes safeName. */
  readonly dev: string | undefined
  /** Routing protocol (iproute2 `proto`), only when it passes safeName. */
  readonly proto: string | undefined
  readonly metric: number | undefined
  /** iproute2 `linkdown` (every next hop down): the bastion cannot use it now. */
  readonly linkDown: boolean
  readonly format: RouteFormat
  /** 1-based line number in the whole command output, for `-v`. */
  readonly line: number
}

/** A mutable route while its lines are read (iproute2 multipath spans several lines). */
export type RouteDraft = { -readonly [K in keyof RemoteRoute]: RemoteRoute[K] }

/** Longest line looked at; no real route line comes near it. Longer lines are skipped. */
export const MAX_LINE = 512

/** A line of output: its 1-based number in the whole output and its text. */
export interface Line {
  readonly no: number
  /** The text without colour sequences and trailing blanks; '' when unusable. */
  readonly text: string
  /** Too long or holding control characters: never parsed, counted as ignored. */
  readonly unusable: boolean
}

// SGR colour sequences: `ip -color` (an alias some distributions set) would wrap addresses in them.
const ANSI = /\x1b\[[0-9;]*m/g

/**
 * Splits text into lines (LF, CRLF or CR), removes colour sequences and trailing blanks, and
 * marks lines longer than MAX_LINE or holding other control characters as unusable ('').
 */
export function splitLines(text: string, firstLineNo = 1): Line[] {
  return text.split(/\r\n|\r|\n/).map((raw, i) => {
    const t = raw.length > MAX_LINE * 2 ? '' : raw.replace(ANSI, '').trimEnd()
    const usable = t.length <= MAX_LINE && !/[\x00-\x08\x0b-\x1f\x7f]/.test(t)
    return { no: firstLineNo + i, text: usable ? t : '', unusable: !usable }
  })
}

/** Whitespace-separated tokens of a line (tabs included). */
export function tokens(text: string): string[] {
  return text.split(/[ \t]+/).filter((t) => t !== '')
}

/** Interface, protocol and similar names that may be shown to the user; undefined otherwise. */
export function safeName(s: string | undefined): string | undefined {
  return s !== undefined && /^[A-Za-z0-9_.:@+-]{1,32}$/.test(s) ? s : undefined
}

/** A decimal number 0..2^32-1 without sign, exponent or leading '+'; undefined otherwise. */
export function safeNumber(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined
  const n = Number(s)
  return n <= 0xffffffff ? n : undefined
}

/**
 * An IP literal in canonical text, or undefined. A `%scope` suffix (fe80::1%eth0) is dropped;
 * anything else (a prefix, brackets, a name) is refused.
 */
export function parseIp(s: string | undefined, family?: 4 | 6): string | undefined {
  if (s === undefined || s.length > 64) return undefined
  const bare = s.replace(/%[A-Za-z0-9_.:@+-]{1,32}$/, '')
  if (bare.includes('/')) return undefined
  const c = tryParseCidr(bare)
  if (!c || (family !== undefined && c.family !== family)) return undefined
  return c.address
}

/**
 * A network from "addr/len" or a bare address (a host: /32 or /128); `%scope` before the slash
 * (fe80::%em0/64, as BSD prints it) is dropped. Host bits are cleared as the kernels do.
 */
export function parseNet(s: string | undefined, family?: 4 | 6): Cidr | undefined {
  if (s === undefined || s.length > 80) return undefined
  const m = /^([^/%]+)(?:%[A-Za-z0-9_.:@+-]{1,32})?(?:\/(\d{1,3}))?$/.exec(s)
  if (!m) return undefined
  const c = tryParseCidr(m[2] === undefined ? m[1] : `${m[1]}/${m[2]}`)
  if (!c || (family !== undefined && c.family !== family)) return undefined
  return c
}

/** The default network of a family. */
export function defaultNet(family: 4 | 6): Cidr {
  return family === 4 ? { family, address: '0.0.0.0', prefix: 0 } : { family, address: '::', prefix: 0 }
}

/** Whether a network is a single address (/32, /128). */
export function isHostNet(c: Cidr): boolean {
  return c.prefix === (c.family === 4 ? 32 : 128)
}

/** A route draft with the fields every format fills; the parser sets the rest. */
export function draft(net: Cidr, format: RouteFormat, line: number): RouteDraft {
  return {
    net,
    kind: 'unicast',
    gateway: undefined,
    connected: false,
    dev: undefined,
    proto: undefined,
    metric: undefined,
    linkDown: false,
    format,
    line,
  }
}

/** What a parser returns: the routes, the bastion's own addresses it saw, and what it skipped. */
export interface ParsedRoutes {
  readonly routes: RemoteRoute[]
  /** Addresses of the bastion itself (iproute2 `src`, `local` routes, BSD host routes on lo0). */
  readonly ownAddresses: string[]
  /** Non-empty lines that were neither a header nor a route. */
  readonly ignoredLines: number
  /** True when the route cap cut the section short. */
  readonly truncated: boolean
}

/** Most routes taken from one section; a bastion with a full BGP table is not an auto-nets case. */
export const MAX_SECTION_ROUTES = 4096

/** Adds an address to a list once, keeping the list bounded. */
export function addOnce(list: string[], address: string | undefined): void {
  if (address !== undefined && !list.includes(address) && list.length < 256) list.push(address)
}
