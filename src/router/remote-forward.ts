import { EventEmitter } from 'node:events'
import net from 'node:net'
import type { AcceptConnection, Client, ClientChannel, RejectConnection, TcpConnectionDetails } from 'ssh2'
import { type ForwardSpec, ALL_ADDRESSES, formatForward, isNonLoopbackBind } from '../config/forward-spec'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from '../router/access'
import { ConnTracker } from '../router/conn-tracker'
import { pipeBoth } from '../router/pipe'
import { resetSocket } from '../router/socket-reset'
import type { ConnMeta, Destination } from '../router/types'
import type { SshSession } from './session'

export interface RemoteForwardOptions {
  /** A parsed `-R` (kind 'remote'). bindPort 0 lets the server pick the port. */
  readonly spec: ForwardSpec
  readonly session: SshSession
  readonly tracker?: ConnTracker
  readonly log: Logger
  /** Optional filter on the remote client's address (as the server reports it). */
  readonly access?: AccessPolicy
  /** How long start() waits for a session that is down (default 10 s). */
  readonly upWaitMs?: number
  /** Local connect timeout towards host:hostPort (default 10 s). */
  readonly connectTimeoutMs?: number
  /** First retry delay when re-requesting after a reconnect fails (default 1 s, doubles, cap 30 s). */
  readonly retryMs?: number
}

export type RemoteForwardState = 'idle' | 'requesting' | 'active' | 'down' | 'stopped'

type Handler = (info: TcpConnectionDetails, accept: AcceptConnection<ClientChannel>, reject: RejectConnection) => void

/**
 * ssh2 emits every forwarded-tcpip channel as one 'tcp connection' event on the Client, so
 * several forwards sharing a connection would all see each one. One dispatcher per Client
 * routes by the (address, port) the server reports — the address string we sent and the
 * port it bound — so exactly one forward handles a connection; anything else is rejected
 * (e.g. one arriving after stop() but before the server processed the cancel).
 */
const dispatchers = new WeakMap<Client, Map<string, Handler>>()

function routesFor(client: Client): Map<string, Handler> {
  let routes = dispatchers.get(client)
  if (!routes) {
    const table = new Map<string, Handler>()
    client.on('tcp connection', (info, accept, reject) => {
      const h = table.get(routeKey(info.destIP, info.destPort))
      if (h) h(info, accept, reject)
      else reject()
    })
    dispatchers.set(client, table)
    routes = table
  }
  return routes
}

function routeKey(addr: string, port: number): string {
  return `${addr}\u0000${port}`
}

/**
 * `ssh -R`: asks the server to listen (tcpip-forward) and connects each forwarded connection
 * to spec.host:hostPort from this machine (a plain local connection, not through a dialer).
 * After the SSH session reconnects the forward is requested again, retried with backoff while
 * the server still holds the old listener. Emits 'bound' (port) on every successful request.
 */
export class RemoteForward extends EventEmitter {
  readonly tracker: ConnTracker
  private readonly name: string
  /** What goes on the wire: OpenSSH sends "" for "all addresses" (RFC 4254 §7.1). */
  private readonly wireAddr: string
  private st: RemoteForwardState = 'idle'
  private boundPort = 0
  private client: Client | undefined
  private readonly channels = new Set<ClientChannel>()
  private readonly sockets = new Set<net.Socket>()
  private retryTimer: NodeJS.Timeout | undefined
  private readonly onUp = (): void => this.reRequest(0)
  private readonly onDown = (): void => {
    if (this.st === 'stopped') return
    this.detach()
    this.st = 'down'
  }

  constructor(private readonly opts: RemoteForwardOptions) {
    super()
    if (opts.spec.kind !== 'remote') throw new TunnelError('INTERNAL', `RemoteForward given a ${opts.spec.kind} forward`)
    this.tracker = opts.tracker ?? new ConnTracker()
    this.name = formatForward(opts.spec)
    this.wireAddr = opts.spec.bindHost === ALL_ADDRESSES ? '' : opts.spec.bindHost
  }

  /** The port the server listens on (the allocated one for port 0); 0 while not bound. */
  get port(): number {
    return this.boundPort
  }

  get state(): RemoteForwardState {
    return this.st
  }

  /**
   * Requests the forward; resolves with the port the server bound. Rejects with a TunnelError
   * explaining the refusal (PORT_IN_USE, or LISTEN for "not permitted" / address problems),
   * or NOT_CONNECTED when the session is down and does not come back within upWaitMs.
   */
  async start(): Promise<number> {
    if (this.st !== 'idle') throw new TunnelError('INTERNAL', `${this.name}: already started`)
    const { session, log, spec } = this.opts
    this.st = 'requesting'
    try {
      await session.waitUp(this.opts.upWaitMs ?? 10_000)
      const client = session.client
      if (!client) throw new TunnelError('NOT_CONNECTED', `${this.name}: the SSH session is down`)
      await this.request(client)
    } catch (e) {
      if (this.state !== 'stopped') this.st = 'idle' // the getter: TS would narrow this.st
      throw e instanceof TunnelError ? e : new TunnelError('NOT_CONNECTED', `${this.name}: ${errorMessage(e)}`, { cause: e })
    }
    if (this.state === 'stopped') return this.boundPort
    session.on('up', this.onUp)
    session.on('down', this.onDown)
    session.on('closed', this.onDown)
    if (isNonLoopbackBind(spec)) {
      // sshd answers success either way; with the default GatewayPorts no it silently binds
      // loopback instead (channels.c channel_fwd_bind_addr), which the protocol cannot tell us.
      log.warn('ssh', `${this.name}: the server listens on ${spec.bindHost === ALL_ADDRESSES ? 'all addresses' : spec.bindHost} only if its sshd_config has GatewayPorts clientspecified (or yes); with the default (no) it binds loopback only`)
    }
    return this.boundPort
  }

  /** One tcpip-forward request on client; on success registers the dispatcher route. */
  private async request(client: Client): Promise<void> {
    const { spec } = this.opts
    const port = await new Promise<number>((resolve, reject) => {
      try {
        client.forwardIn(this.wireAddr, spec.bindPort, (err, realPort) => (err ? reject(err) : resolve(realPort)))
      } catch (e) {
        reject(e) // ssh2 throws synchronously when the socket is no longer writable
      }
    }).catch(async (e: unknown) => {
      // The reply carries no reason (RFC 4254 REQUEST_FAILURE): find out which case it is.
      if (!/Unable to bind/.test(errorMessage(e))) throw e
      throw await explainRefusal(client, spec, this.name)
    })
    if (this.st === 'stopped') {
      void cancel(client, this.wireAddr, port) // stop() ran while the request was in flight
      return
    }
    const routes = routesFor(client)
    const key = routeKey(this.wireAddr, port)
    if (routes.has(key)) {
      throw new TunnelError('INTERNAL', `${this.name}: another forward already handles ${this.wireAddr}:${port}`)
    }
    routes.set(key, (info, accept, reject) => this.onConnection(info, accept, reject))
    this.client = client
    this.boundPort = port
    this.st = 'active'
    this.opts.log.verbose('ssh', `${this.name}: the server listens on port ${port}`)
    this.emit('bound', port)
  }

  /** After a reconnect: request again; the old sshd may still hold the port, so retry. */
  private reRequest(attempt: number): void {
    clearTimeout(this.retryTimer)
    if (this.st === 'stopped' || this.st === 'active') return
    const { session, log } = this.opts
    const client = session.client
    if (!client) return // the next 'up' calls us again
    this.st = 'requesting'
    this.request(client).then(
      () => log.info('ssh', `${this.name}: forward re-established after reconnect (server port ${this.boundPort})`),
      (e: unknown) => {
        if (this.st === 'stopped' || session.client !== client) return
        this.st = 'down'
        const delay = Math.min(30_000, (this.opts.retryMs ?? 1000) * 2 ** attempt)
        const msg = `${this.name}: re-requesting after reconnect failed: ${errorMessage(e)}; retrying in ${(delay / 1000).toFixed(1)} s`
        if (attempt === 0) log.warn('ssh', msg)
        else log.verbose('ssh', msg)
        this.retryTimer = setTimeout(() => this.reRequest(attempt + 1), delay)
      },
    )
  }

  private onConnection(info: TcpConnectionDetails, accept: AcceptConnection<ClientChannel>, reject: RejectConnection): void {
    const { spec, log } = this.opts
    const src = `${info.srcIP}:${info.srcPort}`
    if (this.opts.access && !this.opts.access.allows(info.srcIP)) {
      log.warn('route', `${this.name}: refused client ${src} (not in ${this.opts.access.describe()})`)
      reject()
      return
    }
    const dst: Destination = { host: spec.host, port: spec.hostPort }
    const dstText = dst.host.includes(':') ? `[${dst.host}]:${dst.port}` : `${dst.host}:${dst.port}`
    const meta: ConnMeta = { id: this.tracker.nextId(), frontEnd: 'forward', srcAddress: info.srcIP, srcPort: info.srcPort }
    const conn = this.tracker.open(meta, dst)
    // Connect first, confirm the channel after: a refused local service then closes the
    // remote client's connection at once instead of after an accepted-then-dropped channel.
    const sock = net.connect({ host: dst.host, port: dst.port, allowHalfOpen: true, noDelay: true })
    this.sockets.add(sock)
    sock.once('close', () => this.sockets.delete(sock))
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000
    const timer = setTimeout(() => sock.destroy(new Error(`connect timed out after ${timeoutMs / 1000} s`)), timeoutMs)
    let connected = false
    sock.once('error', (err) => {
      clearTimeout(timer)
      if (connected) return // pipeBoth owns errors from here on
      this.tracker.close(conn, errorMessage(err))
      log.warn('route', `#${meta.id} forward ${src} → ${dstText}: ${errorMessage(err)}`)
      reject()
    })
    sock.once('connect', () => {
      connected = true
      clearTimeout(timer)
      if (this.st === 'stopped') {
        sock.destroy()
        this.tracker.close(conn, 'forward stopped')
        reject()
        return
      }
      const ch = accept()
      this.opts.session.trackChannel(ch)
      this.channels.add(ch)
      ch.once('close', () => this.channels.delete(ch))
      log.verbose('route', `#${meta.id} forward ${src} → ${dstText} open`)
      // pipeBoth resets its first argument on failure, and only a socket can be reset; so the
      // local socket goes first and the counters are swapped to keep "up" = originator → target.
      const counters = {
        get bytesUp() { return conn.bytesDown },
        set bytesUp(n: number) { conn.bytesDown = n },
        get bytesDown() { return conn.bytesUp },
        set bytesDown(n: number) { conn.bytesUp = n },
      }
      void pipeBoth(sock, ch, counters).then((r) => {
        this.tracker.close(conn, r.error?.message)
        log.verbose('route', `#${meta.id} forward ${src} → ${dstText} closed (${r.bytesDown} B up, ${r.bytesUp} B down)` +
          (r.error ? `: ${r.error.message}` : ''))
      })
    })
  }

  /** Removes the dispatcher route for the current client (connections of a dead client are gone anyway). */
  private detach(): void {
    clearTimeout(this.retryTimer)
    if (this.client) dispatchers.get(this.client)?.delete(routeKey(this.wireAddr, this.boundPort))
    this.client = undefined
  }

  /** Cancels the forward on the server (cancel-tcpip-forward) and resets its connections. */
  async stop(): Promise<void> {
    if (this.st === 'stopped') return
    const client = this.client
    this.st = 'stopped'
    const { session } = this.opts
    session.off('up', this.onUp)
    session.off('down', this.onDown)
    session.off('closed', this.onDown)
    this.detach()
    for (const s of this.sockets) resetSocket(s)
    for (const ch of this.channels) ch.destroy()
    if (client && session.client === client) await cancel(client, this.wireAddr, this.boundPort)
  }
}

/** cancel-tcpip-forward; resolves either way (the connection may be going away). */
function cancel(client: Client, addr: string, port: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 2000)
    try {
      client.unforwardIn(addr, port, () => {
        clearTimeout(t)
        resolve()
      })
    } catch {
      clearTimeout(t)
      resolve()
    }
  })
}

/**
 * A refused tcpip-forward says nothing about why. Probe with a loopback, server-allocated
 * port: if that works, forwarding is permitted and the problem is this address/port (in use,
 * privileged, or an address the server does not have); if it fails too, the server does not
 * permit remote forwarding at all (AllowTcpForwarding no/local, a restrict key, PermitListen).
 */
async function explainRefusal(client: Client, spec: ForwardSpec, name: string): Promise<TunnelError> {
  const where = `${spec.bindHost === ALL_ADDRESSES ? '*' : spec.bindHost}:${spec.bindPort}`
  const probeOk = await new Promise<boolean>((resolve) => {
    try {
      client.forwardIn('localhost', 0, (err, port) => {
        if (err) return resolve(false)
        void cancel(client, 'localhost', port).then(() => resolve(true))
      })
    } catch {
      resolve(false)
    }
  })
  if (!probeOk) {
    return new TunnelError('LISTEN', `${name}: the SSH server does not permit remote port forwarding`, {
      hint: "its sshd_config has AllowTcpForwarding no/local (or PermitListen excludes this port), or the key is restricted (restrict / no-port-forwarding in authorized_keys); ask the admin, or use -L instead",
    })
  }
  if (spec.bindPort !== 0 && spec.bindPort < 1024) {
    return new TunnelError('LISTEN', `${name}: the SSH server refused to listen on ${where}`, {
      hint: 'ports below 1024 need a root login on the server (or the port is in use there); choose a port above 1023',
    })
  }
  if (isNonLoopbackBind(spec) && spec.bindHost !== ALL_ADDRESSES) {
    return new TunnelError('LISTEN', `${name}: the SSH server refused to listen on ${where}: the port is in use there, or ${spec.bindHost} is not an address of the server`, {
      hint: 'a non-loopback bind needs GatewayPorts clientspecified (or yes) in the bastion\'s sshd_config and an address the server has; try * or 0.0.0.0, or another port',
    })
  }
  return new TunnelError('PORT_IN_USE', `${name}: port ${spec.bindPort} is already in use on the SSH server`, {
    hint: 'another program (or an earlier session that has not timed out yet) listens there; choose another port, or 0 to let the server pick one',
  })
}
