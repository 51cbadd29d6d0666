import { type Cidr, formatCidr, parseCidr } from '../config/cidr'
import { RouteTable } from './route-table'

/**
 * Who may use a proxy or forward listener (--allow CIDR, repeatable). Loopback clients are
 * always allowed: a listener bound to loopback is reachable from this machine only anyway.
 * With no --allow, only loopback is allowed — binding to another address does not open the
 * proxy to the network by itself.
 */
export class AccessPolicy {
  private readonly table: RouteTable
  readonly allowed: readonly Cidr[]

  constructor(allow: readonly string[] = []) {
    this.allowed = [...allow.map(parseCidr), parseCidr('127.0.0.0/8'), parseCidr('::1')]
    this.table = new RouteTable(this.allowed.map((cidr) => ({ cidr, action: 'tunnel' as const })))
  }

  /** Whether a client address (as a socket reports it; IPv4-mapped IPv6 works) may connect. */
  allows(address: string | undefined): boolean {
    return address !== undefined && this.table.decide(address) === 'tunnel'
  }

  describe(): string {
    return this.allowed.map(formatCidr).join(', ')
  }
}

/** Loopback addresses a listener may bind without a warning. */
export function isLoopbackBind(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}
