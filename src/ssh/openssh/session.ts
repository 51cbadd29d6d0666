/**
 * One SSH connection carried by OpenSSH, kept up. start() reuses the user's live ControlMaster
 * when their config names one (no second login: a 2FA bastion asks once), else starts a master
 * of ours; either way we speak the connection layer over its control socket in proxy mode.
 * When the master exits or the connection drops (network loss noticed by the master's
 * keepalive, sshd restarted, a master killed) the session emits 'down', fails every open
 * channel (clients get a reset, never a clean EOF) and tries again with exponential backoff and
 * jitter ('reconnecting', then 'up'): the user's master again if it is back, else one of ours.
 *
 * One proxy connection per master, for the master's whole life: OpenSSH leaves a half-made
 * proxy channel behind for every refused open and dies when such a connection closes
 * (channels.c chan_send_close2 "no remote_id", fatal). Ours: the master is stopped first.
 * The user's: see reuse.ts (a keeper holds the connection when it must).
 */
import { EventEmitter } from 'node:events'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import type { Duplex } from 'node:stream'
import type { ConnMeta, Destination, IncomingConnection, RemoteListenSpec } from '../../router/types'
import { resetSocket } from '../../router/socket-reset'
import { dialOver } from './dialer'
import { type Link, type OwnMasterSpec, ownLink, reusedLink } from './link'
import { type ExecResult, execOverProxy } from './remote-exec'
import { OpensshRemoteListener } from './remote-listener'
import { WindowBudget } from './receive-window'
import { checkUserMaster } from './reuse'
import { notConnected, waitUntilUp } from '../wait-up'
import { backoffDelay, retryLine } from '../backoff'

export type OpensshSessionState = 'connecting' | 'up' | 'down' | 'closed'

export interface OpensshSessionInit {
  readonly ssh: string
  /** Builds our master's argv for a socket path and whether a terminal may be used. */
  readonly argsFor: (socketPath: string, interactive: boolean) => string[]
  /** Private directory (0700, ours) for control sockets. */
  readonly controlDir: string
  readonly destination: string
  /** The user's ControlPath (from `ssh -G`), tried first; undefined: always our own master. */
  readonly userControlPath?: string
  /** Whether ssh may prompt on the terminal: at start, and on reconnects. */
  readonly interactive: () => boolean
  readonly log: Logger
  readonly setpriv?: string
  readonly env?: NodeJS.ProcessEnv
  readonly minDelayMs?: number
  readonly maxDelayMs?: number
  /** Bounds of a dial (defaults: 10 s outage wait, 15 s open). */
  readonly outageWaitMs?: number
  readonly openTimeoutMs?: number
}

export interface OpensshSessionStats {
  reconnects: number
  channelsOpen: number
  channelsTotal: number
}

export class OpensshSession extends EventEmitter {
  state: OpensshSessionState = 'connecting'
  private link: Link | undefined
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private reconnects = 0
  /** Channel totals of the links that are gone. */
  private pastTotal = 0
  readonly budget = new WindowBudget()
  private readonly minDelay: number
  private readonly maxDelay: number
  private started = false
  /** Cancels the attempt in flight (reconnectNow). */
  private attemptAbort: AbortController | undefined
  /** Attempt number: an attempt superseded by reconnectNow() discards what it got. */
  private generation = 0
  /**
   * After a network change the user's master still holds its connection on the old path (we
   * never stop it; its keepalive will notice): the next attempt starts a master of ours.
   */
  private skipUserMaster = false

  private readonly dialOptions: { outageWaitMs: number; openTimeoutMs: number }

  constructor(readonly init: OpensshSessionInit) {
    super()
    this.dialOptions = { outageWaitMs: init.outageWaitMs ?? 10_000, openTimeoutMs: init.openTimeoutMs ?? 15_000 }
    this.minDelay = init.minDelayMs ?? 500
    this.maxDelay = init.maxDelayMs ?? 30_000
  }

  get stats(): OpensshSessionStats {
    const s = this.link?.conn.stats
    return {
      reconnects: this.reconnects,
      channelsOpen: s?.channelsOpen ?? 0,
      channelsTotal: this.pastTotal + (s?.channelsTotal ?? 0),
    }
  }

  /** Which master carries us now: its pid and whether it is the user's. */
  get master(): { pid: number | undefined; reused: boolean; controlPath: string } | undefined {
    const l = this.link
    return l ? { pid: l.pid, reused: l.reused, controlPath: l.controlPath } : undefined
  }

  /** The proxy connection while up. */
  get connection(): import('./proxy-connection').ProxyConnection | undefined {
    return this.state === 'up' ? this.link?.conn : undefined
  }

  /** The current master's control socket (for control requests such as -R), while up. */
  get controlPath(): string | undefined {
    return this.state === 'up' ? this.link?.controlPath : undefined
  }

  // ---- what the tunnel uses (the engine interface) ----

  /** One direct-tcpip channel; waits a bounded time while a reconnect is in progress. */
  dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    return dialOver(this, dst, meta, this.dialOptions)
  }

  /** The destination as the user gave it (for messages). */
  get destination(): string {
    return this.init.destination
  }

  get log(): Logger {
    return this.init.log
  }

  /** Runs a command on the bastion through a session channel. */
  async exec(command: string, opts: { timeoutMs?: number; maxBytes?: number } = {}): Promise<ExecResult> {
    await this.waitUp(opts.timeoutMs ?? 10_000)
    const conn = this.connection
    if (!conn) throw notConnected('the SSH connection is down')
    return execOverProxy(conn, command, opts)
  }

  /**
   * -R: the bastion listens; each forwarded connection is offered to onConnection. The remote
   * client's address is not known here (the master accepts the channel itself).
   */
  listenRemote(spec: RemoteListenSpec, onConnection: (c: IncomingConnection) => void): OpensshRemoteListener {
    const l = new OpensshRemoteListener(this, spec, this.init.controlDir, this.init.log)
    l.on('connection', (socket: import('node:net').Socket) =>
      onConnection({ accept: () => socket, reject: () => resetSocket(socket) }),
    )
    return l
  }

  /** For the up line and status: the engine and which master carries us. */
  describe(): { engine: 'openssh'; detail?: string } {
    const m = this.master
    if (!m) return { engine: 'openssh' }
    return { engine: 'openssh', detail: `${m.reused ? 'your ControlMaster' : 'master'} pid ${m.pid ?? '?'}` }
  }

  /** A method, not a comparison, so TypeScript does not narrow `state` across awaits. */
  private isClosed(): boolean {
    return this.state === 'closed'
  }

  async start(): Promise<void> {
    if (this.state !== 'connecting' || this.link) throw new TunnelError('INTERNAL', 'ssh: session already started')
    try {
      this.adopt(await this.connectOnce(this.init.interactive()))
    } catch (e) {
      this.state = 'closed'
      throw e
    }
    this.started = true
  }

  /**
   * The network changed (engine.ts): the link is dropped at once (our master is stopped, the
   * user's is left alone and only our channels on it are failed) and we dial again at once.
   */
  reconnectNow(why: string): void {
    if (this.state === 'closed' || !this.started) return
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.attempt = 0
    const link = this.link
    if (link) {
      const err = new TunnelError('SSH_CONNECT', `ssh: ${why}: dropped the connection to ${this.init.destination} to dial again`)
      this.pastTotal += link.conn.stats.channelsTotal
      this.link = undefined
      this.state = 'down'
      if (link.reused) this.skipUserMaster = true
      void link.drop(err)
      this.emit('down', err)
    }
    this.attemptAbort?.abort()
    void this.retry()
  }

  /** Resolves when up; rejects NOT_CONNECTED after timeoutMs or on close(). */
  waitUp(timeoutMs: number): Promise<void> {
    return waitUntilUp(this, () => this.state, this.init.destination, timeoutMs)
  }


  async close(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    clearTimeout(this.retryTimer)
    this.emit('closed')
    const link = this.link
    this.link = undefined
    await link?.stop()
  }

  private async connectOnce(interactive: boolean): Promise<Link> {
    const { init } = this
    const generation = this.generation
    let link: Link | undefined
    const skipUser = this.skipUserMaster
    this.skipUserMaster = false
    if (init.userControlPath && !skipUser) {
      const uid = process.getuid?.() ?? 0
      const check = await checkUserMaster(init.userControlPath, uid)
      if (check.ok) {
        init.log.verbose('ssh', `openssh: reusing your ControlMaster (pid ${check.pid}) at ${init.userControlPath}`)
        link = await reusedLink(init.userControlPath, this.budget, init.log)
      } else {
        init.log.verbose('ssh', `openssh: not reusing ${init.userControlPath}: ${check.why}`)
      }
    }
    if (!link) {
      const spec: OwnMasterSpec = {
        ssh: init.ssh,
        args: (sock) => init.argsFor(sock, interactive),
        controlDir: init.controlDir,
        interactive,
        destination: init.destination,
        log: init.log,
        setpriv: init.setpriv,
        env: init.env,
        signal: (this.attemptAbort = new AbortController()).signal,
      }
      link = await ownLink(spec, this.budget)
    }
    if (this.isClosed() || generation !== this.generation) {
      await link.stop()
      throw new TunnelError('NOT_CONNECTED', 'ssh: session closed while connecting')
    }
    return link
  }

  private adopt(link: Link): void {
    this.link = link
    this.state = 'up'
    this.attempt = 0
    link.watch((why) => {
      if (this.link !== link) return
      this.pastTotal += link.conn.stats.channelsTotal
      this.link = undefined
      void link.stop()
      if (this.state === 'closed') return
      this.state = 'down'
      // (The runtime logs the loss once, for every engine.)
      this.emit('down', why)
      this.scheduleRetry()
    })
    this.emit('up')
  }

  /** `failed`: why the last attempt failed, said on the same line (one line per attempt). */
  private scheduleRetry(failed?: string): void {
    if (this.state === 'closed') return
    this.attempt++
    const delayMs = backoffDelay(this.attempt, this.minDelay, this.maxDelay)
    this.init.log.info('ssh', retryLine(this.init.destination, delayMs, this.attempt, failed))
    this.emit('reconnecting', { attempt: this.attempt, delayMs })
    this.retryTimer = setTimeout(() => void this.retry(), delayMs)
  }

  private async retry(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'connecting'
    const generation = ++this.generation
    try {
      const link = await this.connectOnce(this.init.interactive())
      this.reconnects++
      this.adopt(link) // emits 'up': the runtime logs the return once
    } catch (e) {
      if (this.isClosed() || generation !== this.generation) return
      const err = e instanceof TunnelError ? e : new TunnelError('SSH_CONNECT', errorMessage(e))
      const fatalKind = err.code === 'SSH_AUTH' || err.code === 'SSH_NEED_TTY' || err.code.startsWith('HOSTKEY_')
      if (fatalKind) {
        this.init.log.error('ssh', `reconnect: ${err.message}${err.hint ? ` (${err.hint})` : ''}`)
        this.attempt = Math.max(this.attempt, Math.ceil(Math.log2(this.maxDelay / this.minDelay)) + 1)
      }
      this.state = 'down'
      this.scheduleRetry(fatalKind ? undefined : err.message)
    }
  }
}

