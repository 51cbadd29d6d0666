import ipaddr from 'ipaddr.js'
import { TunnelError } from '../errors'

/** A normalised network: address has its host bits cleared, prefix is 0..32 or 0..128. */
export interface Cidr {
  readonly family: 4 | 6
  readonly address: string
  readonly prefix: number
}

/** Canonical text form, e.g. "10.0.0.0/16", "fd00::/8". */
export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`
}

/** True when s is an IPv4 or IPv6 literal (no prefix). */
export function isIpLiteral(s: string): boolean {
  return ipaddr.isValid(s) && (ipaddr.IPv4.isValidFourPartDecimal(s) || s.includes(':'))
}

/**
 * Parses "10.0.0.0/16", "10.1.2.3" (→ /32), "fd00::/8", "::1" (→ /128), "0/0" and "::/0".
 * Host bits are cleared ("10.1.2.3/16" → "10.1.0.0/16") as iptables and nft do.
 * IPv4-mapped IPv6 addresses are kept as IPv6. Returns undefined when s is not an address
 * or CIDR (the caller may then try it as a hostname).
 */
export function tryParseCidr(s: string): Cidr | undefined {
  const text = s.trim()
  if (text === '0/0') return { family: 4, address: '0.0.0.0', prefix: 0 }
  const slash = text.indexOf('/')
  const addrText = slash < 0 ? text : text.slice(0, slash)
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1)
  let addr: ipaddr.IPv4 | ipaddr.IPv6
  if (ipaddr.IPv4.isValidFourPartDecimal(addrText)) addr = ipaddr.IPv4.parse(addrText)
  else if (addrText.includes(':') && ipaddr.IPv6.isValid(addrText)) addr = ipaddr.IPv6.parse(addrText)
  else return undefined
  const family = addr.kind() === 'ipv4' ? 4 : 6
  const max = family === 4 ? 32 : 128
  let prefix = max
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText)) return undefined
    prefix = Number(prefixText)
    if (prefix > max) return undefined
  }
  return { family, address: maskAddress(addr, prefix), prefix }
}

/** Like tryParseCidr but throws BAD_CIDR with a hint. */
export function parseCidr(s: string): Cidr {
  const c = tryParseCidr(s)
  if (!c) {
    throw new TunnelError('BAD_CIDR', `invalid subnet "${s}"`, {
      hint: 'use a CIDR like 10.0.0.0/16 or fd00::/64, a single IP, or a hostname',
    })
  }
  return c
}

/** The /32 or /128 network of one address. */
export function hostCidr(address: string): Cidr {
  const c = tryParseCidr(address)
  if (!c || c.prefix !== (c.family === 4 ? 32 : 128)) {
    throw new TunnelError('BAD_CIDR', `not an IP address: "${address}"`)
  }
  return c
}

function maskAddress(addr: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): string {
  const bytes = addr.toByteArray()
  for (let i = 0; i < bytes.length; i++) {
    const bitsHere = Math.max(0, Math.min(8, prefix - i * 8))
    bytes[i] &= bitsHere === 0 ? 0 : (0xff << (8 - bitsHere)) & 0xff
  }
  return ipaddr.fromByteArray(bytes).toString()
}

/** Whether network `c` contains address `ip` (an IP literal of the same family). */
export function cidrContains(c: Cidr, ip: string): boolean {
  const parsed = tryParseCidr(ip)
  if (!parsed || parsed.family !== c.family) return false
  const masked = tryParseCidr(`${ip}/${c.prefix}`)
  return masked !== undefined && masked.address === c.address
}

/** Removes exact duplicates, keeping the first occurrence. */
export function uniqueCidrs(list: readonly Cidr[]): Cidr[] {
  const seen = new Set<string>()
  const out: Cidr[] = []
  for (const c of list) {
    const key = formatCidr(c)
    if (!seen.has(key)) {
      seen.add(key)
      out.push(c)
    }
  }
  return out
}

/** Whether two networks share any address (same family, one contains the other's base). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false
  return a.prefix <= b.prefix ? cidrContains(a, b.address) : cidrContains(b, a.address)
}
