import type { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { ClientChannel } from 'ssh2'
import { formatHostPort } from '../../config/host-port'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import { silentLogger } from '../../observe/logger'
import type { ConnMeta, Destination, Dialer } from '../../router/types'
import { ChannelWindowManager, type ChannelWindowOptions } from './channel-window'
import { DialError } from '../../router/dial-error'
import { mapChannelOpenError } from './errors-map'
import { channelOpenFailureCode, type Client, installChannelDestroy, transportSocket } from './ssh2-compat'
import { coalesceWrites } from './write-coalescer'

/** What the dialer needs of its session (SshSession). */
export interface DialerSession {
  readonly state: 'connecting' | 'up' | 'down' | 'closed'
  /** The authenticated client while up. */
  readonly client: Client | undefined
  readonly target: { readonly alias: string }
  waitUp(timeoutMs: number): Promise<void>
  /** Counts a channel as open until it closes. */
  trackChannel(ch: EventEmitter): void
}

export interface SshDialerOptions {
  /** How long a dial waits for a lost connection to come back (default 10 s). */
  readonly outageWaitMs?: number
  /** How long the server may take to answer a channel open (default 15 s). */
  readonly openTimeoutMs?: number
  readonly log?: Logger
  /** Adaptive receive windows (see channel-window.ts); false keeps ssh2's fixed 2 MiB window. */
  readonly windows?: ChannelWindowOptions | false
}

/**
 * A Dialer that opens one direct-tcpip channel per connection on the session's client.
 * The returned stream is the ssh2 channel itself: end() sends EOF (half-close) and write()
 * honours the channel window (backpressure).
 */
export class SshDialer implements Dialer {
  private readonly outageWaitMs: number
  private readonly openTimeoutMs: number
  private readonly log: Logger
  /** Receive-window management of the channels this dialer opens (undefined when disabled). */
  readonly windows: ChannelWindowManager | undefined
  /** The client whose transport writes were last set up to be coalesced (see write-coalescer). */
  private coalescedFor: object | undefined

  constructor(private readonly session: DialerSession, opts: SshDialerOptions = {}) {
    this.outageWaitMs = opts.outageWaitMs ?? 10_000
    this.openTimeoutMs = opts.openTimeoutMs ?? 15_000
    this.log = opts.log ?? silentLogger
    this.windows = opts.windows === false ? undefined : new ChannelWindowManager(opts.windows)
  }

  async dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    const deadline = Date.now() + this.outageWaitMs
    // Two rounds at most: the connection can die between "up" and the open.
    for (let round = 0; ; round++) {
      if (this.session.state !== 'up') {
        try {
          await this.session.waitUp(Math.max(0, deadline - Date.now()))
        } catch (e) {
          throw new DialError('not-connected', errorMessage(e), { hint: e instanceof TunnelError ? e.hint : undefined, cause: e })
        }
      }
      const client = this.session.client
      try {
        if (!client) throw new Error('Not connected')
        if (client !== this.coalescedFor) {
          this.coalescedFor = client
          // A transport socket we cannot find just stays uncoalesced.
          const sock = transportSocket(client)
          if (sock) coalesceWrites(sock)
        }
        return await this.open(client, dst, meta)
      } catch (e) {
        const lost = !(e instanceof DialError) && this.session.state !== 'up'
        if (!lost || round > 0 || Date.now() >= deadline) {
          if (e instanceof DialError) throw e
          throw new DialError('not-connected', `ssh: open ${formatHostPort(dst.host, dst.port)}: the SSH connection was lost (${errorMessage(e)})`, {
            hint: 'the tunnel is reconnecting; retry in a moment',
            cause: e,
          })
        }
      }
    }
  }

  private open(client: Client, dst: Destination, meta: ConnMeta): Promise<Duplex> {
    const server = this.session.target.alias
    const where = { host: dst.host, port: dst.port }
    return new Promise((resolve, reject) => {
      let done = false
      const started = performance.now()
      const timer = setTimeout(() => {
        done = true
        reject(new DialError('timeout', `ssh: open ${formatHostPort(dst.host, dst.port)}: ${server} did not answer within ${this.openTimeoutMs / 1000} s`, {
          hint: 'the server or the target is very slow to connect; the SSH connection may be stalled',
        }))
      }, this.openTimeoutMs)
      const onOpen = (err: Error | undefined, ch: ClientChannel): void => {
        clearTimeout(timer)
        if (done) {
          // The open cannot be cancelled in SSH: close the late channel once it arrives.
          ch?.close()
          return
        }
        done = true
        if (err) {
          // No RFC 4254 reason: ssh2 failed it locally because the connection went away.
          if (channelOpenFailureCode(err) === undefined) return reject(err)
          const ce = mapChannelOpenError(err, where, server)
          // Debug only: the relay logs the refusal once (a warning), with the connection's line.
          this.log.debug('ssh', `#${meta.id} ${ce.message}`)
          return reject(ce)
        }
        this.session.trackChannel(ch)
        installChannelDestroy(ch)
        if (this.windows) {
          // The open took one round trip plus the server's connect: the window's RTT estimate.
          this.windows.noteRtt(performance.now() - started)
          this.windows.manage(ch)
        }
        resolve(ch)
      }
      try {
        client.forwardOut(meta.srcAddress, meta.srcPort, dst.host, dst.port, onOpen)
      } catch (e) {
        // ssh2 throws synchronously when its socket is no longer writable.
        clearTimeout(timer)
        reject(e)
      }
    })
  }
}
