import type { Duplex } from 'node:stream'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { DialError } from '../router/dial-error'
import type { ConnMeta, Destination, Dialer } from '../router/types'
import type { SshConnection } from './engine'

export interface SessionPoolOptions {
  /** Creates (does not start) one more connection to the same bastion (SshEngine.connection). */
  readonly make: () => SshConnection
  /** Most sessions (default {@link DEFAULT_MAX_SESSIONS}). One sshd process per session holds
   * ~1,000 channels under the usual 1,024-file soft limit (each forwarded connection costs it one
   * socket), so 16 sessions carry ~16,000 concurrent connections. */
  readonly max?: number
  readonly log: Logger
}

/**
 * Default most SSH connections of a pool: 10,000 concurrent forwarded connections through a
 * stock bastion (sshd under systemd's soft limit of 1,024 open files, ~1,019 channels per
 * connection, measured) need 10; 16 leaves room. OpenSSH's own cap of 16,384 channels per
 * connection (channels.c CHANNELS_MAX_CHANNELS) is never the one hit first on such a bastion.
 */
export const DEFAULT_MAX_SESSIONS = 16

interface Member {
  readonly conn: SshConnection
  /** Channels open when the server last said it was out of resources: full until below. */
  fullAt?: number
}

/**
 * Several SSH connections to one bastion, used as one Dialer, whatever their engine. A stock sshd runs each
 * connection in its own process under systemd's soft limit of 1,024 open files, so one
 * connection carries about a thousand forwarded connections; OpenSSH then answers
 * "open failed". When that happens the channel is retried on another connection, and a new
 * one is opened (up to `max`) when all are full — the pool grows on demand and never opens
 * more connections than the load needs. New channels go to the least loaded connection.
 */
export class SessionPool implements Dialer {
  private readonly members: Member[] = []
  private growing: Promise<Member | undefined> | undefined
  private readonly max: number

  constructor(
    first: SshConnection,
    private readonly opts: SessionPoolOptions,
  ) {
    this.max = Math.max(1, opts.max ?? DEFAULT_MAX_SESSIONS)
    this.members.push({ conn: first })
  }

  /** Opens connections until there are `n` (for --connections N), in parallel. */
  async prestart(n: number): Promise<void> {
    const want = Math.min(this.max, n) - this.members.length
    const conns = Array.from({ length: Math.max(0, want) }, () => this.opts.make())
    const results = await Promise.allSettled(conns.map((c) => c.start()))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await Promise.all(conns.map((c) => c.close().catch(() => {})))
      throw failed.reason
    }
    for (const conn of conns) this.members.push({ conn })
  }

  /** Every connection of the pool (the first one first). */
  get connections(): SshConnection[] {
    return this.members.map((m) => m.conn)
  }

  async dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    // During an outage nothing is up: wait for the reconnect like a single session would
    // (bounded by the dialer), instead of opening more connections that would fail too.
    if (!this.members.some((m) => m.conn.state === 'up')) return this.members[0]!.conn.dial(dst, meta)
    const tried = new Set<Member>()
    for (;;) {
      const m = this.pick(tried) ?? (await this.grow())
      if (!m || tried.has(m)) {
        // Every connection is full and the pool cannot grow: the last error stands.
        return this.members[0]!.conn.dial(dst, meta)
      }
      tried.add(m)
      try {
        return await m.conn.dial(dst, meta)
      } catch (e) {
        if (!(e instanceof DialError) || e.reason !== 'resource') throw e
        m.fullAt = m.conn.stats.channelsOpen
        this.opts.log.verbose('ssh', `connection ${this.members.indexOf(m) + 1} of the pool is full at ${m.fullAt} channels`)
      }
    }
  }

  /** The least loaded connection that is up and not full, skipping those already tried. */
  private pick(tried: ReadonlySet<Member>): Member | undefined {
    let best: Member | undefined
    for (const m of this.members) {
      if (tried.has(m) || m.conn.state !== 'up') continue
      if (m.fullAt !== undefined) {
        if (m.conn.stats.channelsOpen >= m.fullAt) continue
        m.fullAt = undefined // channels were released: it has room again
      }
      if (!best || m.conn.stats.channelsOpen < best.conn.stats.channelsOpen) best = m
    }
    return best
  }

  /** Opens one more connection (one at a time, however many dials are waiting). */
  private grow(): Promise<Member | undefined> {
    if (this.members.length >= this.max) return Promise.resolve(undefined)
    this.growing ??= (async () => {
      const conn = this.opts.make()
      try {
        await conn.start()
        const m: Member = { conn }
        this.members.push(m)
        this.opts.log.info('ssh', `opened SSH connection ${this.members.length} of at most ${this.max} (the others are full)`)
        return m
      } catch (e) {
        await conn.close().catch(() => {})
        this.opts.log.warn('ssh', `could not open another SSH connection: ${errorMessage(e)}`)
        return undefined
      } finally {
        this.growing = undefined
      }
    })()
    return this.growing
  }

  /** Closes every connection but the first (the caller owns that one). */
  async closeExtra(): Promise<void> {
    const extra = this.members.splice(1)
    await Promise.all(extra.map((m) => m.conn.close()))
  }
}
