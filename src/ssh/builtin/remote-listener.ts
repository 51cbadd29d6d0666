import { EventEmitter } from 'node:events'
import type { AcceptConnection, Client, ClientChannel, RejectConnection, TcpConnectionDetails } from 'ssh2'
import { ALL_ADDRESSES, isNonLoopbackBind } from '../../config/forward-spec'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import type { IncomingConnection, RemoteListener, RemoteListenSpec } from '../../router/types'

export interface SshRemoteListenerOptions {
  /** How long start() waits for a session that is down (default 10 s). */
  readonly upWaitMs?: number
  /** First retry delay when re-requesting after a reconnect fails (default 1 s, doubles, cap 30 s). */
  readonly retryMs?: number
}

export type RemoteListenerState = 'idle' | 'requesting' | 'active' | 'down' | 'stopped'

/** What a listener needs of its session (SshSession): the client while up, and its events. */
export interface ListenerSession extends EventEmitter {
  readonly client: Client | undefined
  waitUp(timeoutMs: number): Promise<void>
  /** Counts an accepted channel as open until it closes. */
  trackChannel(ch: EventEmitter): void
}

type Handler = (info: TcpConnectionDetails, accept: AcceptConnection<ClientChannel>, reject: RejectConnection) => void

/**
 * ssh2 emits every forwarded-tcpip channel as one 'tcp connection' event on the Client, so
 * several forwards sharing a connection would all see each one. One dispatcher per Client
 * routes by the (address, port) the server reports — the address string we sent and the
 * port it bound — so exactly one listener handles a connection; anything else is rejected
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
 * `-R` on the built-in engine: asks the server to listen (tcpip-forward) and hands each
 * forwarded connection to `onConnection`. After the SSH session reconnects the forward is
 * requested again, retried with backoff while the server still holds the old listener.
 * Emits 'bound' (port) on every successful request.
 */
export class SshRemoteListener extends EventEmitter implements RemoteListener {
  /** What goes on the wire: OpenSSH sends "" for "all addresses" (RFC 4254 §7.1). */
  private readonly wireAddr: string
  private st: RemoteListenerState = 'idle'
  private boundPort = 0
  private client: Client | undefined
  private readonly channels = new Set<ClientChannel>()
  private retryTimer: NodeJS.Timeout | undefined
  private readonly onUp = (): void => this.reRequest(0)
  private readonly onDown = (): void => {
    if (this.st === 'stopped') return
    this.detach()
    this.st = 'down'
  }

  constructor(
    private readonly session: ListenerSession,
    private readonly spec: RemoteListenSpec,
    private readonly onConnection: (c: IncomingConnection) => void,
    private readonly log: Logger,
    private readonly opts: SshRemoteListenerOptions = {},
  ) {
    super()
    this.wireAddr = spec.bindHost === ALL_ADDRESSES ? '' : spec.bindHost
  }

  /** The port the server listens on (the allocated one for port 0); 0 while never bound. */
  get port(): number {
    return this.boundPort
  }

  get state(): RemoteListenerState {
    return this.st
  }

  /**
   * Requests the forward; resolves with the port the server bound. Rejects with a TunnelError
   * explaining the refusal (PORT_IN_USE, or LISTEN for "not permitted" / address problems),
   * or NOT_CONNECTED when the session is down and does not come back within upWaitMs.
   */
  async start(): Promise<number> {
    if (this.st !== 'idle') throw new TunnelError('INTERNAL', `${this.spec.name}: already started`)
    this.st = 'requesting'
    try {
      await this.session.waitUp(this.opts.upWaitMs ?? 10_000)
      const client = this.session.client
      if (!client) throw new TunnelError('NOT_CONNECTED', `${this.spec.name}: the SSH session is down`)
      await this.request(client)
    } catch (e) {
      if (this.state !== 'stopped') this.st = 'idle' // the getter: TS would narrow this.st
      throw e instanceof TunnelError ? e : new TunnelError('NOT_CONNECTED', `${this.spec.name}: ${errorMessage(e)}`, { cause: e })
    }
    if (this.state === 'stopped') return this.boundPort
    this.session.on('up', this.onUp)
    this.session.on('down', this.onDown)
    this.session.on('closed', this.onDown)
    return this.boundPort
  }

  /** One tcpip-forward request on client; on success registers the dispatcher route. */
  private async request(client: Client): Promise<void> {
    const { spec } = this
    const port = await new Promise<number>((resolve, reject) => {
      try {
        client.forwardIn(this.wireAddr, spec.bindPort, (err, realPort) => (err ? reject(err) : resolve(realPort)))
      } catch (e) {
        reject(e) // ssh2 throws synchronously when the socket is no longer writable
      }
    }).catch(async (e: unknown) => {
      // The reply carries no reason (RFC 4254 REQUEST_FAILURE): find out which case it is.
      if (!/Unable to bind/.test(errorMessage(e))) throw e
      throw await explainRefusal(client, spec)
    })
    if (this.st === 'stopped') {
      void cancel(client, this.wireAddr, port) // stop() ran while the request was in flight
      return
    }
    const routes = routesFor(client)
    const key = routeKey(this.wireAddr, port)
    if (routes.has(key)) {
      throw new TunnelError('INTERNAL', `${spec.name}: another forward already handles ${this.wireAddr}:${port}`)
    }
    routes.set(key, (info, accept, reject) => this.incoming(info, accept, reject))
    this.client = client
    this.boundPort = port
    this.st = 'active'
    this.log.verbose('ssh', `${spec.name}: the server listens on port ${port}`)
    this.emit('bound', port)
  }

  /** After a reconnect: request again; the old sshd may still hold the port, so retry. */
  private reRequest(attempt: number): void {
    clearTimeout(this.retryTimer)
    if (this.st === 'stopped' || this.st === 'active') return
    const client = this.session.client
    if (!client) return // the next 'up' calls us again
    this.st = 'requesting'
    this.request(client).then(
      () => this.log.info('ssh', `${this.spec.name}: forward re-established after reconnect (server port ${this.boundPort})`),
      (e: unknown) => {
        if (this.st === 'stopped' || this.session.client !== client) return
        this.st = 'down'
        const delay = Math.min(30_000, (this.opts.retryMs ?? 1000) * 2 ** attempt)
        const msg = `${this.spec.name}: re-requesting after reconnect failed: ${errorMessage(e)}; retrying in ${(delay / 1000).toFixed(1)} s`
        if (attempt === 0) this.log.warn('ssh', msg)
        else this.log.verbose('ssh', msg)
        this.retryTimer = setTimeout(() => this.reRequest(attempt + 1), delay)
      },
    )
  }

  /** One forwarded connection: the front-end accepts (after its local connect) or rejects. */
  private incoming(info: TcpConnectionDetails, accept: AcceptConnection<ClientChannel>, reject: RejectConnection): void {
    if (this.st === 'stopped') return reject()
    this.onConnection({
      srcAddress: info.srcIP,
      srcPort: info.srcPort,
      accept: () => {
        const ch = accept()
        this.session.trackChannel(ch)
        this.channels.add(ch)
        ch.once('close', () => this.channels.delete(ch))
        if (this.st === 'stopped') ch.destroy()
        return ch
      },
      reject: () => reject(),
    })
  }

  /** Removes the dispatcher route for the current client (connections of a dead client are gone anyway). */
  private detach(): void {
    clearTimeout(this.retryTimer)
    if (this.client) dispatchers.get(this.client)?.delete(routeKey(this.wireAddr, this.boundPort))
    this.client = undefined
  }

  /** Cancels the forward on the server (cancel-tcpip-forward) and closes its channels. */
  async stop(): Promise<void> {
    if (this.st === 'stopped') return
    const client = this.client
    this.st = 'stopped'
    this.session.off('up', this.onUp)
    this.session.off('down', this.onDown)
    this.session.off('closed', this.onDown)
    this.detach()
    for (const ch of this.channels) ch.destroy()
    if (client && this.session.client === client) await cancel(client, this.wireAddr, this.boundPort)
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
async function explainRefusal(client: Client, spec: RemoteListenSpec): Promise<TunnelError> {
  const name = spec.name
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
