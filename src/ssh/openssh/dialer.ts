/**
 * Dialling over the OpenSSH engine: one direct-tcpip channel per connection on the session's
 * proxy connection. Waits a bounded time for a session that is down (a reconnect in progress),
 * bounds the open itself, and reports refusals with the same reasons as the built-in engine
 * (so the front-ends answer RST / SOCKS codes / 502 the same way).
 */
import type { Duplex } from 'node:stream'
import { errorMessage } from '../../errors'
import type { ConnMeta, Destination } from '../../router/types'
import { formatHostPort } from '../../config/host-port'
import { DialError } from '../../router/dial-error'
import { channelOpenFailure } from '../channel-open-failure'
import { OpenRefused, OpenTimeout } from './proxy-connection'
import type { Logger } from '../../observe/logger'
import type { ProxyConnection } from './proxy-connection'

/** What dialling needs of the session (structural: the session does not import this file's users). */
export interface DialHost {
  readonly state: 'connecting' | 'up' | 'down' | 'closed'
  /** The proxy connection while up. */
  readonly connection: ProxyConnection | undefined
  waitUp(timeoutMs: number): Promise<void>
  /** The destination as the user gave it, for messages. */
  readonly destination: string
  readonly log: Logger
}

export async function dialOver(
  session: DialHost,
  dst: Destination,
  meta: ConnMeta,
  opts: { outageWaitMs: number; openTimeoutMs: number },
): Promise<Duplex> {
  const deadline = Date.now() + opts.outageWaitMs
  const server = session.destination
  for (let round = 0; ; round++) {
    if (session.state !== 'up') await session.waitUp(Math.max(0, deadline - Date.now()))
    const conn = session.connection
    try {
      if (!conn) throw new Error('not connected')
      return await conn.openDirectTcpip(dst, { host: meta.srcAddress, port: meta.srcPort }, opts.openTimeoutMs)
    } catch (e) {
      if (e instanceof OpenRefused) {
        const ce = channelOpenFailure(e.reasonCode, e.description, dst, server)
        session.log.verbose('ssh', `#${meta.id} ${ce.message}`)
        throw ce
      }
      if (e instanceof OpenTimeout) {
        throw new DialError('timeout', `ssh: open ${formatHostPort(dst.host, dst.port)}: ${server} did not answer within ${opts.openTimeoutMs / 1000} s`, {
          hint: 'the server or the target is very slow to connect; the SSH connection may be stalled',
        })
      }
      // The connection went away under the open: wait for the reconnect once more.
      if (round > 0 || Date.now() >= deadline || session.state === 'closed') {
        throw new DialError('not-connected', `ssh: open ${formatHostPort(dst.host, dst.port)}: the SSH connection was lost (${errorMessage(e)})`, {
          hint: 'the tunnel is reconnecting; retry in a moment',
          cause: e,
        })
      }
    }
  }
}
