import ipaddr from 'ipaddr.js'
import type { Cidr } from '../config/cidr'

/** Where a name is resolved: through the tunnel, or by the machine's original resolver. */
export type DnsRoute = 'tunnel' | 'local'

/** Lower-cases and drops one trailing dot: "Corp.Internal." → "corp.internal"; root → "". */
export function normalizeDomain(s: string): string {
  const t = s.trim().toLowerCase()
  return t.endsWith('.') ? t.slice(0, -1) : t
}

/**
 * Split DNS (--dns-domain): names equal to or under one of the suffixes go through the
 * tunnel, all others stay local. Matching is on label boundaries and case-insensitive:
 * "corp.internal" matches "corp.internal" and "a.corp.internal", not "xcorp.internal".
 * With no domains at all, everything goes through the tunnel.
 *
 * extraTunnelSuffixes (e.g. reverseZones() of the routed subnets) are tunnelled too when
 * domains are given, so PTR lookups of private addresses reach the private resolver.
 */
export class SplitDnsPolicy {
  private readonly suffixes: Set<string>
  private readonly all: boolean

  constructor(domains: readonly string[], extraTunnelSuffixes: readonly string[] = []) {
    const norm = domains.map(normalizeDomain)
    // No domains, or the root itself: everything is tunnelled.
    this.all = norm.length === 0 || norm.includes('')
    this.suffixes = new Set([...norm, ...extraTunnelSuffixes.map(normalizeDomain)].filter((s) => s !== ''))
  }

  /** True when every name is tunnelled (no --dns-domain). */
  get tunnelsEverything(): boolean {
    return this.all
  }

  /** qname as in a QueryInfo (presentation form, any case, trailing dot optional). */
  route(qname: string): DnsRoute {
    if (this.all) return 'tunnel'
    const name = normalizeDomain(qname)
    if (name === '') return 'local'
    // Walk the name's suffixes at label boundaries: a.b.c → a.b.c, b.c, c. An escaped dot
    // (\046) inside a label is not a boundary, and names here never contain a raw one.
    let i = -1
    do {
      if (this.suffixes.has(name.slice(i + 1))) return 'tunnel'
      i = name.indexOf('.', i + 1)
    } while (i >= 0)
    return 'local'
  }
}

/**
 * The reverse-DNS zones (in-addr.arpa / ip6.arpa) that cover a network, so PTR queries for
 * tunnelled addresses can be tunnelled too. Prefixes that are not on an octet (v4) or nibble
 * (v6) boundary expand to the zones of the next boundary that cover it (10.16.0.0/12 →
 * 16.10 … 31.10.in-addr.arpa). /0 yields nothing (never tunnel every PTR).
 */
export function reverseZones(c: Cidr): string[] {
  const step = c.family === 4 ? 8 : 4
  if (c.prefix === 0) return []
  const bytes = ipaddr.parse(c.address).toByteArray()
  // Digits: v4 octets, v6 nibbles, most significant first.
  const digits = c.family === 4 ? bytes : bytes.flatMap((b) => [b >> 4, b & 0xf])
  const fmt = (d: number[]): string =>
    d
      .map((x) => (c.family === 4 ? String(x) : x.toString(16)))
      .reverse()
      .join('.') + (c.family === 4 ? '.in-addr.arpa' : '.ip6.arpa')
  const whole = Math.floor(c.prefix / step)
  const rest = c.prefix % step
  if (rest === 0) return [fmt(digits.slice(0, whole))]
  // At most 128 zones (v4 /1) or 8 (v6): small enough to list.
  const count = 1 << (step - rest)
  const out: string[] = []
  for (let k = 0; k < count; k++) out.push(fmt([...digits.slice(0, whole), digits[whole] + k]))
  return out
}
