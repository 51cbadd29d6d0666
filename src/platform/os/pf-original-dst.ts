/**
 * The macOS counterpart of getOriginalDst (original-dst.ts): the original destination of a
 * connection that pf's rdr sent to our listener, asked from the privileged helper (`natlook`
 * op → DIOCNATLOOK on /dev/pf, which only root may open). Unlike SO_ORIGINAL_DST it is
 * asynchronous — one helper round trip per connection, as sshuttle's QUERY_PF_NAT — so the
 * transparent listener must await it (see the README's macOS section for the wiring).
 */
import type * as net from 'node:net'
import { TunnelError } from '../../errors'
import type { OriginalDst } from './original-dst'
import type { NatLookAnswer, NatLookQuery } from './pf-natlook'

/** Whatever can run a natlook in the helper (HelperClient, once it has the method). */
export interface NatLookClient {
  natlook(q: NatLookQuery): Promise<NatLookAnswer>
}

/**
 * An original-destination lookup for accepted sockets: the query is the connection as the
 * listener sees it (client = remote end, rdr target = local end).
 */
export function pfOriginalDst(client: NatLookClient): (socket: net.Socket) => Promise<OriginalDst> {
  return async (socket) => {
    const { remoteAddress, remotePort, localAddress, localPort } = socket
    if (!remoteAddress || !remotePort || !localAddress || !localPort) {
      throw new TunnelError('ORIGINAL_DST', 'socket has no addresses (closed already?)')
    }
    return client.natlook({
      src: { host: remoteAddress, port: remotePort },
      dst: { host: localAddress, port: localPort },
      proto: 'tcp',
    })
  }
}
