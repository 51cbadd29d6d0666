/**
 * Dialling over the OpenSSH engine: one direct-tcpip channel per connection on the session's
 * proxy connection. Waits a bounded time for a session that is down (a reconnect in progress),
 * bounds the open itself, and reports refusals with the same reasons as the built-in engine
 * (so the front-ends answer RST / SOCKS codes / 502 the same way).
 */
import type { Duplex } from 'node:stream'
import { TunnelError, errorMessage } from '../../errors'
import type { ConnMeta, Destination } from '../../router/types'
import { ChannelOpenError, mapChannelOpenError } from '../errors-map'
import { OpenRefused, OpenTimeout } from './proxy-connection'
import type { OpensshSession } from './session'

export async function dialOver(
  session: OpensshSession,
  dst: Destination,
  meta: ConnMeta,
  opts: { outageWaitMs: number; openTimeoutMs: number },
): Promise<Duplex> {
  const deadline = Date.now() + opts.outageWaitMs
  const server = session.init.destination
  for (let round = 0; ; round++) {
    if (session.state !== 'up') await session.waitUp(Math.max(0, deadline - Date.now()))
    const conn = session.connection
    try {
      if (!conn) throw new Error('not connected')
      return await conn.openDirectTcpip(dst, { host: meta.srcAddress, port: meta.srcPort }, opts.openTimeoutMs)
    } catch (e) {
      if (e instanceof OpenRefused) {
        const ce = mapChannelOpenError(Object.assign(new Error(e.description), { reason: e.reasonCode }), dst, server)
        session.init.log.verbose('ssh', `#${meta.id} ${ce.message}`)
        throw ce
      }
      if (e instanceof OpenTimeout) {
        throw new ChannelOpenError('timeout', `ssh: open ${dst.host}:${dst.port}: ${server} did not answer within ${opts.openTimeoutMs / 1000} s`,
          'the server or the target is very slow to connect; the SSH connection may be stalled')
      }
      // The connection went away under the open: wait for the reconnect once more.
      if (round > 0 || Date.now() >= deadline || session.state === 'closed') {
        throw new TunnelError('NOT_CONNECTED', `ssh: open ${dst.host}:${dst.port}: the SSH connection was lost (${errorMessage(e)})`, {
          hint: 'the tunnel is reconnecting; retry in a moment',
          cause: e,
        })
      }
    }
  }
}
