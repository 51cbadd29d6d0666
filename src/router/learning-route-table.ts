/**
 * The route table with the addresses learnt from DNS answers (--route-by-name) behind it: the
 * given networks and excludes decide first (so an exclude always wins), then a learnt address
 * is tunnelled through the default remote.
 */
import { hostCidr } from '../config/cidr'
import type { LearntRoutes } from './learnt-routes'
import { type RouteEntry, RouteTable } from './route-table'

export class LearningRouteTable extends RouteTable {
  constructor(
    entries: readonly RouteEntry[],
    private readonly learnt: Pick<LearntRoutes, 'lookup'>,
  ) {
    super(entries)
  }

  override lookup(ip: string): RouteEntry | undefined {
    const given = super.lookup(ip)
    if (given !== undefined) return given
    const l = this.learnt.lookup(ip)
    return l ? { cidr: hostCidr(l.address), action: 'tunnel' } : undefined
  }
}
