import { TunnelError } from '../errors'
import type { RouteEntry, RouteTable } from './route-table'
import type { ConnMeta, Destination, Dialer } from './types'

/**
 * Sends each connection through the remote its destination is routed to (several bastions in
 * one process: `10.0.0.0/16=bastion-a 10.1.0.0/16=bastion-b`). Names (SOCKS5, HTTP proxy,
 * forwards) and addresses outside every routed subnet go through the default remote.
 */
export class RoutingDialer implements Dialer {
  constructor(
    private readonly routes: RouteTable,
    private readonly dialers: ReadonlyMap<string, Dialer>,
    private readonly defaultRemote: string,
  ) {
    if (!dialers.has(defaultRemote)) throw new TunnelError('INTERNAL', `no dialer for the default remote ${defaultRemote}`)
  }

  /** The remote a destination goes through. */
  remoteFor(host: string): string {
    return this.remoteOf(this.routes.lookup(host))
  }

  /** Uses the relay's route decision when it travels with the dial (one lookup per connection). */
  dial(dst: Destination, meta: ConnMeta) {
    const entry = meta.route !== undefined ? meta.route : this.routes.lookup(dst.host)
    return this.dialers.get(this.remoteOf(entry))!.dial(dst, meta)
  }

  private remoteOf(e: RouteEntry | null | undefined): string {
    return e?.action === 'tunnel' && e.via !== undefined ? e.via : this.defaultRemote
  }
}
