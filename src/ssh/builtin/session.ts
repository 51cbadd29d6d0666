import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError, toTunnelError } from '../../errors'
import type { ConnMeta, Destination, IncomingConnection, RemoteListenSpec } from '../../router/types'
import type { ConnectionState, ConnectionStats, RemoteResult, SshConnection } from '../engine'
import type { KeyCache } from './auth'
import type { ChannelWindowOptions } from './channel-window'
import { connectChain, type ConnectDeps } from './connect'
import { SshDialer } from './dialer'
import { mapConnectError } from './errors-map'
import { runRemote } from './remote-exec'
import { SshRemoteListener } from './remote-listener'
import { beforeChannelsEnd, type Client } from './ssh2-compat'
import { waitUntilUp } from '../wait-up'
import { backoffDelay, retryLine } from '../backoff'

export type SessionState = ConnectionState
export type SessionStats = ConnectionStats

export interface SessionOptions {
  /** First reconnect delay (default 500 ms); doubles per attempt. */
  readonly minDelayMs?: number
  /** Cap of the reconnect delay (default 30 s). */
  readonly maxDelayMs?: number
  /** Replaces connectChain (tests). */
  readonly connect?: typeof connectChain
  /** -R: first retry delay when re-requesting a listener after a reconnect (default 1 s). */
  readonly forwardRetryMs?: number
  /** Channel opens: how long to wait during an outage and for the server's answer (tests). */
  readonly outageWaitMs?: number
  readonly openTimeoutMs?: number
  /** Adaptive receive windows (channel-window.ts); false keeps ssh2's fixed 2 MiB window. */
  readonly windows?: ChannelWindowOptions | false
}

/** Everything a session needs: where to go, how to verify and ask, and tuning for tests. */
export interface SessionInit extends Omit<ConnectDeps, 'signal' | 'keyCache'>, SessionOptions {
  readonly target: SshHostConfig
  /** Resolved ProxyJump hops, outermost first (empty for a direct connection). */
  readonly hops?: readonly SshHostConfig[]
}

/**
 * One long-lived SSH connection (through any jump hosts): the built-in engine's SshConnection.
 * start() makes the first connection and rejects with its typed error; afterwards the session
 * keeps itself up: on loss it emits 'down' (TunnelError), then retries with exponential backoff
 * and jitter, emitting 'reconnecting' ({attempt, delayMs}) before each try and 'up' when back.
 * Auth or host key failures on a reconnect are logged as errors and retried at the capped
 * delay: the CLI decides whether to give up.
 */
export class SshSession extends EventEmitter implements SshConnection {
  state: SessionState = 'connecting'
  readonly stats: SessionStats = { reconnects: 0, channelsOpen: 0, channelsTotal: 0 }
  /** Channels of the current connection that have not closed yet. */
  private readonly live = new Set<EventEmitter>()
  private current: Client | undefined
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private abort = new AbortController()
  /** Cancels the attempt in flight (reconnectNow): it may be stuck on a path that is gone. */
  private attemptAbort: AbortController | undefined
  /** Attempt number: an attempt superseded by reconnectNow() discards what it got. */
  private generation = 0
  private started = false
  private readonly keyCache: KeyCache = new Map()
  private readonly minDelay: number
  private readonly maxDelay: number
  private readonly connect: typeof connectChain
  private readonly forwardRetryMs: number | undefined
  /** Opens this session's channels; its window manager is shared by all of them. */
  readonly dialer: SshDialer

  readonly target: SshHostConfig
  readonly hops: readonly SshHostConfig[]
  private readonly deps: Omit<ConnectDeps, 'signal' | 'keyCache'>

  constructor(init: SessionInit) {
    super()
    this.target = init.target
    this.hops = init.hops ?? []
    this.deps = { makeVerifier: init.makeVerifier, prompter: init.prompter, log: init.log }
    this.minDelay = init.minDelayMs ?? 500
    this.maxDelay = init.maxDelayMs ?? 30_000
    this.connect = init.connect ?? connectChain
    this.forwardRetryMs = init.forwardRetryMs
    this.dialer = new SshDialer(this, {
      log: init.log,
      ...(init.outageWaitMs !== undefined && { outageWaitMs: init.outageWaitMs }),
      ...(init.openTimeoutMs !== undefined && { openTimeoutMs: init.openTimeoutMs }),
      ...(init.windows !== undefined && { windows: init.windows }),
    })
  }

  /** One direct-tcpip channel (dialer.ts): waits a bounded time during an outage; rejects DialError. */
  dial(dst: Destination, meta: ConnMeta): Promise<Duplex> {
    return this.dialer.dial(dst, meta)
  }

  /** Runs a command on the bastion (remote-exec.ts). */
  exec(command: string, opts?: { timeoutMs?: number; maxBytes?: number }): Promise<RemoteResult> {
    return runRemote(this, command, opts)
  }

  describe(): { engine: 'builtin' } {
    return { engine: 'builtin' }
  }

  /** -R: asks the server to listen; re-requested after every reconnect until stop(). */
  listenRemote(spec: RemoteListenSpec, onConnection: (c: IncomingConnection) => void): SshRemoteListener {
    return new SshRemoteListener(this, spec, onConnection, this.deps.log, { retryMs: this.forwardRetryMs })
  }

  /** A method, not a comparison, so TypeScript does not narrow `state` across awaits. */
  private closed(): boolean {
    return this.state === 'closed'
  }

  /** The authenticated client while up, else undefined. */
  get client(): Client | undefined {
    return this.state === 'up' ? this.current : undefined
  }

  /** First connection. Rejects with the TunnelError that stopped it (the CLI exits on it). */
  async start(): Promise<void> {
    if (this.state !== 'connecting' || this.current) throw new TunnelError('INTERNAL', 'ssh: session already started')
    let client: Client
    try {
      client = await this.connectOnce()
    } catch (e) {
      // No retry loop after a failed start: the caller reports the error and exits.
      this.state = 'closed'
      throw e
    }
    if (this.closed()) {
      client.end()
      throw new TunnelError('NOT_CONNECTED', 'ssh: session closed while connecting')
    }
    this.started = true
    this.adopt(client)
  }

  /**
   * The network changed (engine.ts): fails the live channels and drops the connection at once
   * (destroy, not end: a goodbye over a dead path would wait for TCP to give up), then dials
   * again at once. An attempt in flight is cancelled; a pending backoff delay is cut short.
   */
  reconnectNow(why: string): void {
    if (this.state === 'closed' || !this.started) return
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.attempt = 0
    const c = this.current
    if (c) {
      const err = new TunnelError('SSH_CONNECT', `ssh: ${why}: dropped the connection to ${this.target.alias} to dial again`)
      this.current = undefined
      this.state = 'down'
      this.failLiveChannels(err)
      c.destroy()
      this.emit('down', err)
    }
    this.attemptAbort?.abort()
    void this.retry()
  }

  /** Resolves when the session is up; rejects NOT_CONNECTED after timeoutMs or on close(). */
  waitUp(timeoutMs: number): Promise<void> {
    return waitUntilUp(this, () => this.state, this.target.alias, timeoutMs)
  }


  /** Counts a channel as open until it closes (for stats and status). */
  trackChannel(ch: EventEmitter): void {
    this.stats.channelsOpen++
    this.stats.channelsTotal++
    this.live.add(ch)
    ch.once('close', () => {
      this.stats.channelsOpen--
      this.live.delete(ch)
    })
  }

  /**
   * When the connection dies, ssh2 ends every channel with a clean EOF (utils.js onCHANNEL_CLOSE
   * pushes null) — a truncated download would look complete to the client. Its Client emits
   * 'close' just before that cleanup, so we fail the channels first: whoever pipes a channel
   * (it listens for 'error') resets its client instead of forwarding a FIN.
   */
  private failLiveChannels(why: TunnelError): void {
    const channels = [...this.live]
    this.live.clear()
    for (const ch of channels) if (ch.listenerCount('error') > 0) ch.emit('error', why)
  }

  /** Stops reconnecting and closes the connection (and every hop). */
  async close(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    clearTimeout(this.retryTimer)
    this.abort.abort()
    const c = this.current
    this.current = undefined
    this.emit('closed')
    if (!c) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        c.destroy()
        resolve()
      }, 2000)
      c.once('close', () => {
        clearTimeout(t)
        resolve()
      })
      c.end()
    })
  }

  private connectOnce(): Promise<Client> {
    const attempt = (this.attemptAbort = new AbortController())
    const signal = AbortSignal.any([this.abort.signal, attempt.signal])
    return this.connect(this.target, this.hops, { ...this.deps, keyCache: this.keyCache, signal })
  }

  private adopt(client: Client): void {
    this.current = client
    this.state = 'up'
    this.attempt = 0
    let lastError: TunnelError | undefined
    client.on('error', (e: Error & { level?: string }) => {
      if (e.level === 'agent') return
      lastError = mapConnectError(e, { host: this.target.hostName, port: this.target.port })
    })
    beforeChannelsEnd(client, () => {
      this.failLiveChannels(lastError ?? new TunnelError('SSH_CONNECT', `ssh: connection to ${this.target.alias} lost`))
      if (this.current !== client) return
      this.current = undefined
      if (this.state === 'closed') return
      this.state = 'down'
      const reason = lastError ?? new TunnelError('SSH_CONNECT', `ssh: connection to ${this.target.alias} closed`)
      // Logged once, by whoever listens to 'down' (the tunnel runtime), for every engine alike.
      this.emit('down', reason)
      this.scheduleRetry()
    })
    this.emit('up')
  }

  /** `failed`: why the last attempt failed, said on the same line (one line per attempt). */
  private scheduleRetry(failed?: string): void {
    if (this.state === 'closed') return
    this.attempt++
    const delayMs = backoffDelay(this.attempt, this.minDelay, this.maxDelay)
    this.deps.log.info('ssh', retryLine(this.target.alias, delayMs, this.attempt, failed))
    this.emit('reconnecting', { attempt: this.attempt, delayMs })
    this.retryTimer = setTimeout(() => void this.retry(), delayMs)
  }

  private async retry(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'connecting'
    const generation = ++this.generation
    const superseded = (): boolean => this.closed() || generation !== this.generation
    try {
      const client = await this.connectOnce()
      if (superseded()) {
        client.end()
        return
      }
      this.stats.reconnects++
      this.adopt(client) // emits 'up': the runtime logs the return once
    } catch (e) {
      if (superseded()) return
      const err = toTunnelError(e, 'SSH_CONNECT')
      const fatalKind = err.code === 'SSH_AUTH' || err.code === 'SSH_NEED_TTY' || err.code.startsWith('HOSTKEY_')
      if (fatalKind) {
        this.deps.log.error('ssh', `reconnect: ${err.message}${err.hint ? ` (${err.hint})` : ''}`)
        // Retrying fast cannot fix credentials or a host key: wait the full cap.
        this.attempt = Math.max(this.attempt, Math.ceil(Math.log2(this.maxDelay / this.minDelay)) + 1)
      }
      this.state = 'down'
      this.scheduleRetry(fatalKind ? undefined : err.message)
    }
  }
}

