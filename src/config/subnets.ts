import dns from 'node:dns/promises'
import os from 'node:os'
import { TunnelError, errorMessage } from '../errors'
import { type Cidr, hostCidr, tryParseCidr, uniqueCidrs } from './cidr'

/** Resolves a host name to all of its addresses (A and AAAA). Injected in tests. */
export type HostLookup = (name: string) => Promise<string[]>

export const systemLookup: HostLookup = async (name) =>
  (await dns.lookup(name, { all: true, verbatim: true })).map((a) => a.address)

// RFC 1123 host names (letters, digits, hyphens, dots); anything else cannot be a host.
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$/i

/**
 * Turns what the user typed as subnets or excludes into networks: CIDRs and single IPs
 * directly, host names into a /32 or /128 for each address they resolve to.
 * Errors: BAD_CIDR for text that is neither; UNKNOWN_HOST for a name that does not resolve.
 */
export async function resolveNetworks(items: readonly string[], lookup: HostLookup = systemLookup): Promise<Cidr[]> {
  const out: Cidr[] = []
  for (const raw of items) {
    const item = raw.trim()
    const c = tryParseCidr(item)
    if (c) {
      out.push(c)
      continue
    }
    if (item.includes('/') || /^[\d.]+$/.test(item) || !HOSTNAME.test(item)) {
      throw new TunnelError('BAD_CIDR', `invalid subnet "${raw}"`, {
        hint: 'use a CIDR like 10.0.0.0/16 or fd00::/64, a single IP, or a host name',
      })
    }
    let addrs: string[]
    try {
      addrs = await lookup(item)
    } catch (e) {
      throw new TunnelError('UNKNOWN_HOST', `cannot resolve "${item}": ${errorMessage(e)}`, {
        hint: 'check the name, or give its subnet as a CIDR',
        cause: e,
      })
    }
    if (addrs.length === 0) {
      throw new TunnelError('UNKNOWN_HOST', `"${item}" has no addresses`, { hint: 'give the subnet as a CIDR' })
    }
    for (const a of addrs) out.push(hostCidr(a))
  }
  return uniqueCidrs(out)
}

/** Every address configured on this machine, as /32 and /128 networks. */
export function localAddressNetworks(ifaces = os.networkInterfaces()): Cidr[] {
  const out: Cidr[] = []
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      const addr = a.address.split('%')[0] // drop a link-local zone id
      const c = tryParseCidr(addr)
      if (c) out.push(hostCidr(c.address))
    }
  }
  return uniqueCidrs(out)
}

/**
 * Addresses the tunnel's own transport uses, which must never be captured (or the SSH
 * connection would be redirected into itself): the bastion and the first jump host. Names
 * that do not resolve locally (later hops are resolved by the previous hop) are skipped.
 */
export async function transportExcludes(hosts: readonly string[], lookup: HostLookup = systemLookup): Promise<Cidr[]> {
  const out: Cidr[] = []
  for (const h of hosts) {
    const literal = tryParseCidr(h)
    if (literal) {
      out.push(hostCidr(literal.address))
      continue
    }
    try {
      for (const a of await lookup(h)) out.push(hostCidr(a))
    } catch {
      /* not resolvable from here: it is reached through the previous hop */
    }
  }
  return uniqueCidrs(out)
}
