import type net from 'node:net'
import type { Logger, Tag } from '../observe/logger'
import type { DescriptorReserve } from './descriptor-reserve'
import { formatIpv6, parseIpv6 } from './socks5-wire'

/**
 * Bounds on connections that have not proved anything yet (a SOCKS5 or HTTP proxy client before
 * its request, a kept-alive HTTP client between requests, a TCP DNS client): an absolute
 * deadline per connection, a cap per source address and one in total, and the descriptor
 * reserve. Idle timers alone are not a bound — a client that sends one byte every few seconds
 * (slowloris) resets them forever — and without caps a neighbour holds every descriptor.
 *
 * Numbers: a browser behind a proxy keeps at most 32 idle connections to it and opens ~6 per
 * site, each in its handshake for a round trip; 256 in handshake at once from one address is
 * far above that, yet one address can then hold only a quarter of the total. The total, 1,024,
 * bounds memory (a pending HTTP head is at most 64 KiB) and, with the deadline, how long a
 * flood can last after it stops. Descriptors are bounded separately, by the reserve.
 */
export const HANDSHAKE_LIMITS = {
  /** Connections still in their handshake from one address (IPv6: one /64). */
  perSource: 256,
  /** Connections still in their handshake in total. */
  total: 1_024,
} as const

/** Why a connection was not admitted. */
export type Refusal = 'per-source' | 'total' | 'descriptors'

/** A connection counted by the guard. done() (or the socket closing) frees its slot. */
export interface Admission {
  /** The handshake finished: stop the deadline and stop counting the connection. Idempotent. */
  done(): void
}

export interface HandshakeGuardOptions {
  readonly log: Logger
  /** Log tag of refusals (default 'route'). */
  readonly tag?: Tag
  readonly perSource?: number
  readonly total?: number
  /** When given, connections are refused while free descriptors are below its reserve. */
  readonly reserve?: DescriptorReserve
  /** Clock for the log rate limit (tests). */
  readonly now?: () => number
}

/** A refusal warning per reason at most this often; the others go to -v and are counted. */
const WARN_EVERY_MS = 10_000

/**
 * Admits connections still in a handshake while the caps and the descriptor reserve allow,
 * and closes them at their deadline through the caller's onExpire. One guard may serve several
 * listeners (both proxies share one), so the caps bound them together.
 */
export class HandshakeGuard {
  readonly perSource: number
  readonly total: number
  private readonly bySource = new Map<string, number>()
  private count = 0
  private readonly warned = new Map<Refusal, { at: number; held: number }>()
  private readonly now: () => number

  constructor(private readonly opts: HandshakeGuardOptions) {
    this.perSource = opts.perSource ?? HANDSHAKE_LIMITS.perSource
    this.total = opts.total ?? HANDSHAKE_LIMITS.total
    this.now = opts.now ?? Date.now
  }

  /** Connections admitted and not yet done, in total. */
  get open(): number {
    return this.count
  }

  /** Connections admitted and not yet done from this address's source (its /64 for IPv6). */
  openFrom(address: string | undefined): number {
    return this.bySource.get(sourceKey(address)) ?? 0
  }

  /**
   * Counts `socket` (which `what` — "socks5", "http-proxy" — accepted) until done() or its close,
   * and calls deadline.onExpire if done() has not come within deadline.ms. Returns undefined,
   * after a rate-limited warning, when a cap or the reserve says no: the caller closes the
   * socket at once.
   */
  admit(socket: net.Socket, what: string, deadline?: { readonly ms: number; readonly onExpire: () => void }): Admission | undefined {
    const key = sourceKey(socket.remoteAddress)
    const fromSource = this.bySource.get(key) ?? 0
    const reserve = this.opts.reserve
    let refusal: { why: Refusal; detail: string } | undefined
    if (fromSource >= this.perSource) {
      refusal = { why: 'per-source', detail: `${fromSource} connections from ${key} are already in their handshake (cap ${this.perSource})` }
    } else if (this.count >= this.total) {
      refusal = { why: 'total', detail: `${this.count} connections are already in their handshake (cap ${this.total})` }
    } else if (reserve && !reserve.allows()) {
      refusal = {
        why: 'descriptors',
        detail: `fewer than ${reserve.reserve} of ${reserve.limit} file descriptors left, kept for the tunnel and connected clients (raise ulimit -n)`,
      }
    }
    if (refusal) {
      this.warn(refusal.why, `${what}: refused ${socket.remoteAddress ?? '?'}: ${refusal.detail}`)
      return undefined
    }
    reserve?.taken()
    this.bySource.set(key, fromSource + 1)
    this.count++
    let timer: NodeJS.Timeout | undefined
    let finished = false
    const done = (): void => {
      if (finished) return
      finished = true
      if (timer) clearTimeout(timer)
      socket.off('close', done)
      this.count--
      const n = (this.bySource.get(key) ?? 1) - 1
      if (n > 0) this.bySource.set(key, n)
      else this.bySource.delete(key)
    }
    socket.once('close', done)
    if (deadline) {
      // Absolute: set once, never pushed back by incoming bytes.
      timer = setTimeout(() => {
        done()
        deadline.onExpire()
      }, deadline.ms)
    }
    return { done }
  }

  private warn(why: Refusal, msg: string): void {
    const t = this.now()
    const tag = this.opts.tag ?? 'route'
    const w = this.warned.get(why)
    if (w && t - w.at < WARN_EVERY_MS) {
      w.held++
      this.opts.log.verbose(tag, msg)
      return
    }
    const more = w && w.held > 0 ? ` (and ${w.held} more refused for this reason since the last warning; -v shows each)` : ''
    this.warned.set(why, { at: t, held: 0 })
    this.opts.log.warn(tag, msg + more)
  }
}

/**
 * What the per-source cap counts by: the address, with IPv4-mapped IPv6 as IPv4, and IPv6 by
 * /64 — one host usually owns a whole /64 and can connect from any address in it.
 */
export function sourceKey(address: string | undefined): string {
  if (!address) return '?'
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)
  if (mapped) return mapped[1]!
  if (!address.includes(':')) return address
  const bytes = parseIpv6(address.replace(/%.*$/, ''))
  if (!bytes) return address
  bytes.fill(0, 8)
  return `${formatIpv6(bytes)}/64`
}
