import net from 'node:net'
import type { Duplex } from 'node:stream'
import { type ForwardSpec, ALL_ADDRESSES, formatForward, isNonLoopbackBind } from '../config/forward-spec'
import { formatHostPort } from '../config/host-port'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import type { AccessPolicy } from './access'
import { ConnTracker, type TrackedConn } from './conn-tracker'
import { DialError } from './dial-error'
import { type Opened, type RelayContext, finishConnection, lineOf, openConnection } from './relay'
import { pipeBoth } from './pipe'
import { resetSocket } from './socket-reset'
import type { Destination, Dialer, IncomingConnection, RemoteListener, RemoteListenHost } from './types'

export interface RemoteForwardOptions {
  /** A parsed `-R` (kind 'remote'). bindPort 0 lets the server pick the port. */
  readonly spec: ForwardSpec
  /** The SSH connection that asks the server to listen (the default remote's). */
  readonly host: RemoteListenHost
  readonly tracker?: ConnTracker
  readonly log: Logger
  /** Optional filter on the remote client's address (when the transport reports it). */
  readonly access?: AccessPolicy
  /** Local connect timeout towards host:hostPort (default 10 s). */
  readonly connectTimeoutMs?: number
}

export type RemoteForwardState = 'idle' | 'active' | 'stopped'

/**
 * `ssh -R`: the far side listens (its transport requests and re-requests the listener), and
 * each connection it forwards is connected to spec.host:hostPort from this machine — a plain
 * local connection, not through the tunnel — then accepted and piped. Connect first, accept
 * after: a refused local service then closes the remote client's connection at once instead of
 * after an accepted-then-dropped channel.
 */
export class RemoteForward {
  readonly tracker: ConnTracker
  private readonly name: string
  private st: RemoteForwardState = 'idle'
  private remote: RemoteListener | undefined
  private readonly sockets = new Set<net.Socket>()
  private readonly relay: RelayContext

  constructor(private readonly opts: RemoteForwardOptions) {
    if (opts.spec.kind !== 'remote') throw new TunnelError('INTERNAL', `RemoteForward given a ${opts.spec.kind} forward`)
    this.tracker = opts.tracker ?? new ConnTracker()
    this.name = formatForward(opts.spec)
    this.relay = { dialer: this.localDialer(), tracker: this.tracker, log: opts.log }
  }

  /** The port the server listens on (the allocated one for port 0); 0 while not bound. */
  get port(): number {
    return this.remote?.port ?? 0
  }

  get state(): RemoteForwardState {
    return this.st
  }

  /** The transport's listener (after start), e.g. for its 'bound' events. */
  get listener(): RemoteListener | undefined {
    return this.remote
  }

  /**
   * Requests the forward; resolves with the port the server bound. Rejects with the transport's
   * TunnelError (PORT_IN_USE, LISTEN, NOT_CONNECTED) and may be started again then.
   */
  async start(): Promise<number> {
    if (this.st !== 'idle') throw new TunnelError('INTERNAL', `${this.name}: already started`)
    const { spec, log } = this.opts
    const remote = this.opts.host.listenRemote({ bindHost: spec.bindHost, bindPort: spec.bindPort, name: this.name }, (c) => this.incoming(c))
    const port = await remote.start()
    this.remote = remote
    this.st = 'active'
    if (isNonLoopbackBind(spec)) {
      // sshd answers success either way; with the default GatewayPorts no it silently binds
      // loopback instead (channels.c channel_fwd_bind_addr), which the protocol cannot tell us.
      log.warn('ssh', `${this.name}: the server listens on ${spec.bindHost === ALL_ADDRESSES ? 'all addresses' : spec.bindHost} only if its sshd_config has GatewayPorts clientspecified (or yes); with the default (no) it binds loopback only`)
    }
    return port
  }

  private incoming(c: IncomingConnection): void {
    const { spec, log, access } = this.opts
    const src = { address: c.srcAddress ?? '?', port: c.srcPort ?? 0 }
    // The access check needs the client's address; a transport that cannot know it cannot check.
    if (access && c.srcAddress !== undefined && !access.allows(c.srcAddress)) {
      log.warn('route', `${this.name}: refused client ${formatHostPort(src.address, src.port)} (not in ${access.describe()})`)
      c.reject()
      return
    }
    const dst: Destination = { host: spec.host, port: spec.hostPort }
    openConnection({ frontEnd: 'forward', label: 'forward', src, dst }, this.relay).then(
      (o) => this.accepted(c, o),
      () => c.reject(), // counted and logged by the relay
    )
  }

  /** The local target answered: accept the channel and pipe. */
  private accepted(c: IncomingConnection, o: Opened): void {
    const local = o.remote as net.Socket
    if (this.st === 'stopped' || local.destroyed) {
      local.destroy()
      finishConnection(o, this.relay, this.st === 'stopped' ? 'forward stopped' : 'local connection lost before the channel was accepted')
      c.reject()
      return
    }
    const channel: Duplex = c.accept()
    if (this.opts.log.enabled('verbose')) this.opts.log.verbose('route', `${lineOf(o)} open`)
    // pipeBoth resets its first argument on failure, and only a socket can be reset; so the
    // local socket goes first and the counters are swapped to keep "up" = originator → target.
    void pipeBoth(local, channel, reversed(o.conn)).then((r) => finishConnection(o, this.relay, r.error?.message))
  }

  /** Connects to the -R target from this machine; a refusal or timeout is a DialError. */
  private localDialer(): Dialer {
    return {
      dial: (dst) =>
        new Promise((resolve, reject) => {
          const sock = net.connect({ host: dst.host, port: dst.port, allowHalfOpen: true, noDelay: true })
          this.sockets.add(sock)
          sock.once('close', () => this.sockets.delete(sock))
          const timeoutMs = this.opts.connectTimeoutMs ?? 10_000
          const timer = setTimeout(() => sock.destroy(new DialError('timeout', `connect timed out after ${timeoutMs / 1000} s`)), timeoutMs)
          // After the connect, errors are pipeBoth's (a socket that fails before the pipe starts
          // is seen as destroyed in accepted()).
          sock.on('error', (err) => {
            clearTimeout(timer)
            reject(DialError.fromSocketError(err))
          })
          sock.once('connect', () => {
            clearTimeout(timer)
            resolve(sock)
          })
        }),
    }
  }

  /** Cancels the forward on the server and resets its connections. */
  async stop(): Promise<void> {
    if (this.st === 'stopped') return
    this.st = 'stopped'
    for (const s of this.sockets) resetSocket(s)
    await this.remote?.stop()
  }
}

/** The counters of a tracked connection seen from the other end (up ↔ down). */
function reversed(conn: TrackedConn): { bytesUp: number; bytesDown: number } {
  return {
    get bytesUp() {
      return conn.bytesDown
    },
    set bytesUp(n: number) {
      conn.bytesDown = n
    },
    get bytesDown() {
      return conn.bytesUp
    },
    set bytesDown(n: number) {
      conn.bytesUp = n
    },
  }
}
