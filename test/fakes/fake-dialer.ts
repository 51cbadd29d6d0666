/**
 * The one fake Dialer of the tests: destinations map to a loopback port (a real socket), an
 * in-memory stream, or a failure thrown the way a real dialer rejects (DialError). Records
 * every dial with its meta.
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { DialError } from '../../src/router/dial-error'
import type { ConnMeta, Destination, Dialer } from '../../src/router/types'

/**
 * Where a dial goes: a loopback port, a port chosen per destination, a stream made on demand,
 * or an error to reject with (use DialError to play the SSH engine).
 */
export type FakeRoute = number | { port(dst: Destination): number } | ((dst: Destination, meta: ConnMeta) => Duplex | Promise<Duplex>) | Error

export class FakeDialer implements Dialer {
  readonly dialed: { dst: Destination; meta: ConnMeta }[] = []
  /** Every stream handed out (loopback sockets and made ones), in order. */
  readonly streams: Duplex[] = []
  /** Loopback connections made. */
  accepted = 0
  /** The next n dials fail (a channel open refused), whatever the route. */
  failNext = 0
  private readonly routes = new Map<string, FakeRoute>()
  private fallback: FakeRoute | undefined

  /** allowHalfOpen: loopback sockets keep their write side after the peer's FIN (default true). */
  constructor(private readonly opts: { allowHalfOpen?: boolean } = {}) {}

  /** Routes "host:port", or "host" (any port). */
  set(key: string, to: FakeRoute): this {
    this.routes.set(key, to)
    return this
  }

  /** Where everything without a route goes (default: unreachable). */
  otherwise(to: FakeRoute): this {
    this.fallback = to
    return this
  }

  /** The destinations dialled, in order. */
  get dsts(): Destination[] {
    return this.dialed.map((d) => d.dst)
  }

  get metas(): ConnMeta[] {
    return this.dialed.map((d) => d.meta)
  }

  async dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    this.dialed.push({ dst, meta })
    if (this.failNext > 0) {
      this.failNext--
      throw new DialError('refused', 'channel open failed (fake)')
    }
    const to = this.routes.get(`${dst.host}:${dst.port}`) ?? this.routes.get(dst.host) ?? this.fallback
    if (to === undefined) throw new DialError('unreachable', `no route to ${dst.host}`)
    if (to instanceof Error) throw to
    if (typeof to === 'function') {
      const made = await to(dst, meta)
      this.streams.push(made)
      return made
    }
    const port = typeof to === 'number' ? to : to.port(dst)
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: this.opts.allowHalfOpen ?? true })
    await new Promise((res, rej) => s.once('connect', res).once('error', (e) => rej(DialError.fromSocketError(e))))
    this.accepted++
    this.streams.push(s)
    return s
  }
}
