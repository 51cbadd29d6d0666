/**
 * The OpenSSH engine as a Dialer: one direct-tcpip channel per connection on the session's
 * proxy connection. Waits a bounded time for a session that is down (a reconnect in progress),
 * bounds the open itself, and reports refusals with the same ChannelOpenError reasons as the
 * built-in engine (so the front-ends answer RST / SOCKS codes / 502 the same way).
 */
import type { Duplex } from 'node:stream'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import { silentLogger } from '../../observe/logger'
import type { ConnMeta, Destination, Dialer } from '../../router/types'
import { ChannelOpenError, mapChannelOpenError } from '../errors-map'
import { OpenRefused, OpenTimeout } from './proxy-connection'
import type { OpensshSession } from './session'

export interface OpensshDialerOptions {
  readonly outageWaitMs?: number
  readonly openTimeoutMs?: number
  readonly log?: Logger
}

export class OpensshDialer implements Dialer {
  private readonly outageWaitMs: number
  private readonly openTimeoutMs: number
  private readonly log: Logger

  constructor(
    private readonly session: OpensshSession,
    opts: OpensshDialerOptions = {},
  ) {
    this.outageWaitMs = opts.outageWaitMs ?? 10_000
    this.openTimeoutMs = opts.openTimeoutMs ?? 15_000
    this.log = opts.log ?? silentLogger
  }

  async dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    const deadline = Date.now() + this.outageWaitMs
    for (let round = 0; ; round++) {
      if (this.session.state !== 'up') await this.session.waitUp(Math.max(0, deadline - Date.now()))
      const conn = this.session.connection
      try {
        if (!conn) throw new Error('not connected')
        return await conn.openDirectTcpip(dst, { host: meta.srcAddress, port: meta.srcPort }, this.openTimeoutMs)
      } catch (e) {
        const server = this.session.init.destination
        if (e instanceof OpenRefused) {
          const ce = mapChannelOpenError(Object.assign(new Error(e.description), { reason: e.reasonCode }), dst, server)
          this.log.verbose('ssh', `#${meta.id} ${ce.message}`)
          throw ce
        }
        if (e instanceof OpenTimeout) {
          throw new ChannelOpenError('timeout', `ssh: open ${dst.host}:${dst.port}: ${server} did not answer within ${this.openTimeoutMs / 1000} s`,
            'the server or the target is very slow to connect; the SSH connection may be stalled')
        }
        // The connection went away under the open: wait for the reconnect once more.
        if (round > 0 || Date.now() >= deadline || this.session.state === 'closed') {
          throw new TunnelError('NOT_CONNECTED', `ssh: open ${dst.host}:${dst.port}: the SSH connection was lost (${errorMessage(e)})`, {
            hint: 'the tunnel is reconnecting; retry in a moment',
            cause: e,
          })
        }
      }
    }
  }
}
