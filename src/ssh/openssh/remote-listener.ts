/**
 * `-R` on the OpenSSH engine. A tcpip-forward sent in proxy mode would work, but the master
 * never passes the reply back (channels.c: global-request replies go to the master's own
 * queue), so neither a refusal nor the port picked for `-R 0:…` could be learnt. Instead the
 * forward is asked for with MUX_C_OPEN_FWD on a control connection of its own, which answers
 * OK / REMOTE_PORT / FAILURE, and its target is a Unix socket of ours in the private control
 * directory: every forwarded connection still passes through us (accounting, audit, status).
 *
 * The master drops a control client's remote forwards when that client disconnects
 * (mux.c mux_remove_remote_forwardings), so the control connection stays open as long as the
 * forward, and a new one is requested after every reconnect (a new master). What OpenSSH does
 * not tell through the mux: the remote client's address (the master accepts the channel).
 */
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import net from 'node:net'
import * as path from 'node:path'
import { randomBytes } from 'node:crypto'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import { resetSocket } from '../../router/socket-reset'
import type { RemoteListenSpec } from '../../router/types'
import { MuxClient, type MuxRemoteForward } from './mux-client'

/** What a remote listener needs of its session: the control socket while up, and 'up' events. */
export interface ListenHost extends EventEmitter {
  readonly state: 'connecting' | 'up' | 'down' | 'closed'
  readonly controlPath: string | undefined
  waitUp(timeoutMs: number): Promise<void>
}


/** Emits 'connection' (net.Socket) per forwarded connection and 'bound' (port) on each grant. */
export class OpensshRemoteListener extends EventEmitter {
  private server: net.Server | undefined
  private mux: MuxClient | undefined
  private boundPort = 0
  private stopped = false
  private retryTimer: NodeJS.Timeout | undefined
  private readonly socketPath: string
  private readonly sockets = new Set<net.Socket>()
  private readonly onUp = (): void => this.reRequest(0)

  constructor(
    private readonly session: ListenHost,
    /** bindHost as ssh -R sends it through the mux: '*' = all addresses, 'localhost' = loopback. */
    private readonly spec: RemoteListenSpec,
    controlDir: string,
    private readonly log: Logger,
  ) {
    super()
    this.socketPath = path.join(controlDir, `r-${randomBytes(4).toString('hex')}`)
  }

  get port(): number {
    return this.boundPort
  }

  /** Listens locally, then asks the master; resolves with the server's port. */
  async start(upWaitMs = 10_000): Promise<number> {
    this.server = await new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer({ allowHalfOpen: true }, (sock) => {
        this.sockets.add(sock)
        sock.once('close', () => this.sockets.delete(sock))
        this.emit('connection', sock)
      })
      s.once('error', reject)
      s.listen(this.socketPath, () => resolve(s))
    })
    try {
      await this.session.waitUp(upWaitMs)
      await this.request()
    } catch (e) {
      await this.stop()
      throw e
    }
    this.session.on('up', this.onUp)
    return this.boundPort
  }

  private forward(port = this.spec.bindPort): MuxRemoteForward {
    return { listenHost: this.spec.bindHost, listenPort: port, connectPath: this.socketPath }
  }

  private async request(): Promise<void> {
    const ctl = this.session.controlPath
    if (!ctl) throw new TunnelError('NOT_CONNECTED', `${this.spec.name}: the SSH connection is down`)
    const mux = await MuxClient.connect(ctl)
    try {
      this.boundPort = await mux.openRemoteForward(this.forward())
    } catch (e) {
      mux.close()
      throw await this.explain(ctl, e)
    }
    this.mux?.close()
    this.mux = mux
    this.log.verbose('ssh', `${this.spec.name}: the server listens on port ${this.boundPort}`)
    this.emit('bound', this.boundPort)
  }

  /**
   * The master's refusal carries no reason ("remote port forwarding failed for listen port
   * N"). Probe with a loopback, server-picked port, as the built-in engine does: if that works
   * the problem is this address or port, else the server permits no remote forwarding at all.
   */
  private async explain(ctl: string, e: unknown): Promise<TunnelError> {
    if (e instanceof TunnelError && e.code !== 'SSH_CONNECT') return e
    let permitted = false
    const probe = await MuxClient.connect(ctl).catch(() => undefined)
    if (probe) {
      const f = { listenHost: 'localhost', listenPort: 0, connectPath: this.socketPath }
      try {
        const port = await probe.openRemoteForward(f)
        permitted = true
        await probe.closeRemoteForward(f, port).catch(() => {})
      } catch {
        permitted = false
      }
      probe.close()
    }
    const { name, bindPort } = this.spec
    if (!permitted) {
      return new TunnelError('LISTEN', `${name}: the SSH server does not permit remote port forwarding`, {
        hint: 'its sshd_config has AllowTcpForwarding no/local (or PermitListen excludes this port), or the key is restricted; use -L instead',
        cause: e,
      })
    }
    if (bindPort !== 0 && bindPort < 1024) {
      return new TunnelError('LISTEN', `${name}: the SSH server refused to listen on port ${bindPort}`, {
        hint: 'ports below 1024 need a root login on the server (or the port is in use there); choose a port above 1023',
        cause: e,
      })
    }
    return new TunnelError('PORT_IN_USE', `${name}: port ${bindPort} is already in use on the SSH server (${errorMessage(e)})`, {
      hint: 'choose another port, or 0 to let the server pick one',
      cause: e,
    })
  }

  /** After a reconnect (a new master): ask again; the old sshd may still hold the port. */
  private reRequest(attempt: number): void {
    clearTimeout(this.retryTimer)
    if (this.stopped) return
    this.request().then(
      () => this.log.info('ssh', `${this.spec.name}: forward re-established after reconnect (server port ${this.boundPort})`),
      (e: unknown) => {
        if (this.stopped || this.session.state !== 'up') return
        const delay = Math.min(30_000, 1000 * 2 ** attempt)
        const msg = `${this.spec.name}: re-requesting after reconnect failed: ${errorMessage(e)}; retrying in ${(delay / 1000).toFixed(1)} s`
        if (attempt === 0) this.log.warn('ssh', msg)
        else this.log.verbose('ssh', msg)
        this.retryTimer = setTimeout(() => this.reRequest(attempt + 1), delay)
      },
    )
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.retryTimer)
    this.session.off('up', this.onUp)
    const mux = this.mux
    this.mux = undefined
    if (mux && this.boundPort) await mux.closeRemoteForward(this.forward(this.boundPort), this.boundPort).catch(() => {})
    mux?.close()
    for (const s of this.sockets) resetSocket(s)
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
    fs.rmSync(this.socketPath, { force: true })
  }
}
