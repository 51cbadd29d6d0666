/**
 * Bounds of --route-by-name, shared by the main process (router/learnt-routes.ts) and the
 * privileged helper, which enforces them again: DNS answers come from the far side, and the
 * helper trusts no request. Each learnt address is one kernel object (a set element, a rule, a
 * route), so their number, lifetime and rate of creation are capped.
 */
import ipaddr from 'ipaddr.js'
import type { Cidr } from './cidr'

/** Most learnt addresses at once (also the nft sets' `size`). */
export const MAX_LEARNT = 4096
/** Longest time one learn request may give an address (a day, plus a grace). */
export const MAX_LEARN_TTL_S = 86_400 + 3_600
/** Most addresses in one learn request (one DNS answer gives at most 32). */
export const MAX_LEARN_ENTRIES = 64
/** New addresses the helper accepts per minute (refreshes are not counted). */
export const MAX_NEW_LEARNT_PER_MINUTE = 1_200

/** ipaddr.js ranges no DNS answer may route: nothing there is a remote host. */
const NEVER = new Set(['unspecified', 'broadcast', 'multicast', 'linkLocal', 'loopback', 'reserved', 'ipv4Mapped'])

/**
 * Why a learnt address may not be captured, or undefined when it may: only single host
 * addresses (never a network, so never 0.0.0.0/0), and none of the special ranges.
 */
export function learnRefusal(c: Cidr): string | undefined {
  if (c.prefix !== (c.family === 4 ? 32 : 128)) return 'not a single address'
  const range = ipaddr.parse(c.address).range()
  return NEVER.has(range) ? `a ${range} address` : undefined
}
