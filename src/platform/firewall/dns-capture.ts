/**
 * The DNS part of a capture spec, as both backends need it: validation (server addresses end up
 * as argv tokens, and nft joins its argv into one command buffer, so a "server" like
 * `1.2.3.4 ; flush ruleset` must never get that far) and the normalised lists the rules are
 * built from.
 */
import { tryParseCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import type { DnsCapture } from './types'

/** Most nameservers one spec may capture. */
export const MAX_DNS_SERVERS = 32
/** Most exempt source ports (our forwarder's sockets) one spec may carry. */
export const MAX_EXEMPT_PORTS = 16
/** The port DNS clients send to; what we capture. */
export const DNS_PORT = 53

/** An integer 1..65535. */
export function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
}

/**
 * A nameserver address in canonical form, or undefined when s is not a plain IP literal.
 * Prefixes and zone ids (`fe80::1%eth0`) are refused: a rule matches an address, and a zone
 * would be silently dropped by the parser.
 */
export function parseServerAddress(s: unknown): { family: 4 | 6; address: string } | undefined {
  if (typeof s !== 'string' || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined
  const c = tryParseCidr(s)
  if (!c || c.prefix !== (c.family === 4 ? 32 : 128)) return undefined
  return { family: c.family, address: c.address }
}

/** Throws INTERNAL when `dns` could produce bad argv (plans are built only from checked specs). */
export function assertDnsCapture(dns: DnsCapture): void {
  const bad = (what: string): never => {
    throw new TunnelError('INTERNAL', `invalid DNS capture: ${what}`)
  }
  if (!Array.isArray(dns.servers) || dns.servers.length === 0 || dns.servers.length > MAX_DNS_SERVERS) {
    bad(`1..${MAX_DNS_SERVERS} servers expected`)
  }
  for (const s of dns.servers) if (!parseServerAddress(s)) bad(`server "${String(s)}" is not an IP address`)
  if (!isPort(dns.port)) bad(`port ${String(dns.port)}`)
  if (dns.gatewayPort !== undefined && (!isPort(dns.gatewayPort) || dns.gatewayPort === dns.port)) {
    bad(`gateway port ${String(dns.gatewayPort)}`)
  }
  if (!Array.isArray(dns.exemptSourcePorts) || dns.exemptSourcePorts.length > MAX_EXEMPT_PORTS) {
    bad(`at most ${MAX_EXEMPT_PORTS} exempt source ports`)
  }
  for (const p of dns.exemptSourcePorts) if (!isPort(p)) bad(`exempt source port ${String(p)}`)
}

/** The servers of one family, canonical and without duplicates, in the given order. */
export function dnsServersOf(dns: DnsCapture, family: 4 | 6): string[] {
  const out: string[] = []
  for (const s of dns.servers) {
    const a = parseServerAddress(s)
    if (a && a.family === family && !out.includes(a.address)) out.push(a.address)
  }
  return out
}

/** The interceptor's ports: the loopback one, and the gateway's one when there is one. */
export function interceptorPorts(dns: DnsCapture): number[] {
  return dns.gatewayPort === undefined ? [dns.port] : [dns.port, dns.gatewayPort]
}

/** The exempt source ports without duplicates, in the given order. */
export function exemptPorts(dns: DnsCapture): number[] {
  return [...new Set(dns.exemptSourcePorts)]
}

/**
 * Commands that forget the kernel's NAT decisions for UDP DNS flows to the captured servers.
 * NAT is decided on a flow's first packet and remembered in conntrack (30 s and more), so a
 * client that reuses a source port would otherwise keep going where the previous rules sent
 * it: after our start, straight to the server (uncaptured); after a restart, to the dead
 * listener of the previous instance; after our stop, to our closed port. Run after apply and
 * after revert; best effort (exit 1 only means "no entries"), and skipped without `conntrack`.
 * TCP flows are left alone: deleting the entry of a live TCP connection would break it.
 */
export function conntrackFlushArgv(dns: DnsCapture | undefined): string[][] {
  if (!dns) return []
  return dnsServersOf(dns, 4)
    .map((s) => ['conntrack', '-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', s, '--orig-port-dst', '53'])
    .concat(dnsServersOf(dns, 6).map((s) => ['conntrack', '-D', '-f', 'ipv6', '-p', 'udp', '--orig-dst', s, '--orig-port-dst', '53']))
}
