/**
 * The one way a front-end binds its TCP listeners: one or more addresses on one port, with the
 * error a user can act on (PORT_IN_USE or LISTEN, in the words of the option that chose it).
 */
import net from 'node:net'
import { formatHostPort } from '../config/host-port'
import type { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'

export interface ListenOptions {
  /** Addresses to bind, all on one port: the first picks it (0: the kernel's choice). */
  readonly hosts: readonly string[]
  readonly port: number
  /**
   * Addresses after the first may be missing here (no IPv6 loopback: EADDRNOTAVAIL /
   * EAFNOSUPPORT): then they are left out, as OpenSSH does. Default: every address is required.
   */
  readonly laterOptional?: boolean
  /** '::' also accepts IPv4 (as ::ffff:a.b.c.d) unless ipv6Only; default: IPv6 addresses are IPv6 only. */
  readonly dualStack?: boolean
  readonly backlog: number
  /** Turns a bind failure into the error the user sees. */
  readonly fail: (err: NodeJS.ErrnoException, where: string) => TunnelError
  /** Errors of a listening server later on (EMFILE on accept): logged, not thrown. */
  readonly log: Logger
  readonly name: string
  /** Gets each accepted socket (allowHalfOpen, TCP_NODELAY) and the family of the address it came in on. */
  readonly onSocket: (socket: net.Socket, family: 4 | 6) => void
}

const MISSING = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT'])

/**
 * Binds every address of `o.hosts` on one port. With port 0 the kernel picks the first one's
 * port, which a later address may already have taken for someone else: then it starts over
 * with a fresh pick (a few times) instead of failing the user.
 */
export async function listenAll(o: ListenOptions): Promise<net.Server[]> {
  try {
    return await bindAll(o)
  } catch (e) {
    throw e instanceof BindError ? o.fail(e.err, e.where) : e
  }
}

async function bindAll(o: ListenOptions): Promise<net.Server[]> {
  for (let attempt = 0; ; attempt++) {
    const first = await listenOne(o, o.hosts[0]!, o.port)
    const port = (first.address() as net.AddressInfo).port
    const servers = [first]
    try {
      for (const host of o.hosts.slice(1)) {
        try {
          servers.push(await listenOne(o, host, port))
        } catch (e) {
          if (!(o.laterOptional && e instanceof BindError && MISSING.has(e.err.code ?? ''))) throw e
        }
      }
      return servers
    } catch (e) {
      for (const s of servers) s.close()
      if (o.port !== 0 || attempt >= 5) throw e
    }
  }
}

/**
 * Every address of this host: '::' dual-stack where the host has IPv6, else 0.0.0.0 (what
 * OpenSSH's two sockets amount to).
 */
export async function listenAnyAddress(o: Omit<ListenOptions, 'hosts' | 'dualStack'>): Promise<net.Server[]> {
  try {
    return await bindAll({ ...o, hosts: ['::'], dualStack: true })
  } catch (e) {
    if (!(e instanceof BindError)) throw e
    if (!MISSING.has(e.err.code ?? '')) throw o.fail(e.err, e.where)
    return listenAll({ ...o, hosts: ['0.0.0.0'] })
  }
}

/** Closes listeners (stops accepting); resolves once they are closed. */
export function closeAll(servers: readonly net.Server[]): Promise<void> {
  return Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined)
}

function listenOne(o: ListenOptions, host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const family = host.includes(':') ? 6 : 4
    // allowHalfOpen: a client's FIN must not close our side; pipeBoth forwards it as SSH EOF.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => o.onSocket(s, family))
    server.once('error', (err: NodeJS.ErrnoException) => reject(new BindError(err, formatHostPort(host, port))))
    server.listen({ host, port, ipv6Only: family === 6 && !o.dualStack, backlog: o.backlog }, () => {
      server.removeAllListeners('error')
      server.on('error', (err) => o.log.error('route', `${o.name} listener: ${err.message}`))
      resolve(server)
    })
  })
}

/** A failed bind, before it becomes the caller's TunnelError. */
class BindError extends Error {
  constructor(
    readonly err: NodeJS.ErrnoException,
    readonly where: string,
  ) {
    super(err.message)
  }
}
