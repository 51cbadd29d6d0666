/**
 * One SSH connection carried by an OpenSSH master of ours, kept up: start() starts the master
 * and enters proxy mode on its control socket; when the master exits (network loss noticed by
 * its keepalive, sshd restarted, killed) the session emits 'down', fails every open channel
 * (clients get a reset, never a clean EOF) and starts a new master with exponential backoff and
 * jitter ('reconnecting', then 'up'), exactly like the built-in engine's session.
 *
 * One proxy connection per master, for the master's whole life: OpenSSH (up to at least 9.9)
 * leaves a half-made proxy channel behind for every refused channel open, and when that proxy
 * connection closes it dies on it (channels.c: chan_send_close2 "no remote_id", fatal). So the
 * proxy connection is closed only together with the master (stop(): SIGTERM first).
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import { Master } from './master'
import { mapMasterOutcome, type MasterOutcome } from './master-errors'
import { MuxClient } from './mux-client'
import { ProxyConnection } from './proxy-connection'
import { WindowBudget } from './receive-window'

export type OpensshSessionState = 'connecting' | 'up' | 'down' | 'closed'

export interface OpensshSessionInit {
  readonly ssh: string
  /** Builds the master's argv for a socket path (masterArgv with everything else fixed). */
  readonly argsFor: (socketPath: string, interactive: boolean) => string[]
  /** Private directory (0700, ours) for control sockets. */
  readonly controlDir: string
  readonly destination: string
  /** Whether ssh may prompt on the terminal: at start, and on reconnects. */
  readonly interactive: () => boolean
  readonly log: Logger
  readonly setpriv?: string
  readonly env?: NodeJS.ProcessEnv
  readonly minDelayMs?: number
  readonly maxDelayMs?: number
}

export interface OpensshSessionStats {
  reconnects: number
  channelsOpen: number
  channelsTotal: number
}

export class OpensshSession extends EventEmitter {
  state: OpensshSessionState = 'connecting'
  private master: Master | undefined
  private conn: ProxyConnection | undefined
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private reconnects = 0
  /** Channel totals of the masters that are gone. */
  private pastTotal = 0
  readonly budget = new WindowBudget()
  private readonly minDelay: number
  private readonly maxDelay: number

  constructor(readonly init: OpensshSessionInit) {
    super()
    this.minDelay = init.minDelayMs ?? 500
    this.maxDelay = init.maxDelayMs ?? 30_000
  }

  get stats(): OpensshSessionStats {
    const s = this.conn?.stats
    return {
      reconnects: this.reconnects,
      channelsOpen: s?.channelsOpen ?? 0,
      channelsTotal: this.pastTotal + (s?.channelsTotal ?? 0),
    }
  }

  /** The master's pid while one runs. */
  get masterPid(): number | undefined {
    return this.master?.pid
  }

  /** The proxy connection while up. */
  get connection(): ProxyConnection | undefined {
    return this.state === 'up' ? this.conn : undefined
  }

  /** The current master's control socket (for control requests such as -R), while up. */
  get controlPath(): string | undefined {
    return this.state === 'up' ? this.master?.socketPath : undefined
  }

  /** A method, not a comparison, so TypeScript does not narrow `state` across awaits. */
  private isClosed(): boolean {
    return this.state === 'closed'
  }

  async start(): Promise<void> {
    if (this.state !== 'connecting' || this.master) throw new TunnelError('INTERNAL', 'ssh: session already started')
    try {
      const { master, conn } = await this.connectOnce(this.init.interactive())
      this.adopt(master, conn)
    } catch (e) {
      this.state = 'closed'
      throw e
    }
  }

  /** Resolves when up; rejects NOT_CONNECTED after timeoutMs or on close(). */
  waitUp(timeoutMs: number): Promise<void> {
    if (this.state === 'up') return Promise.resolve()
    if (this.state === 'closed') return Promise.reject(notConnected('the SSH session is closed'))
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.off('up', onUp)
        this.off('closed', onClosed)
      }
      const onUp = (): void => {
        done()
        resolve()
      }
      const onClosed = (): void => {
        done()
        reject(notConnected('the SSH session is closed'))
      }
      const timer = setTimeout(() => {
        done()
        reject(notConnected(`the SSH connection to ${this.init.destination} is down and did not come back within ${Math.round(timeoutMs / 100) / 10} s`))
      }, timeoutMs)
      this.on('up', onUp)
      this.on('closed', onClosed)
    })
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    clearTimeout(this.retryTimer)
    this.emit('closed')
    const master = this.master
    const conn = this.conn
    this.master = undefined
    this.conn = undefined
    // Master first: it sends the server a disconnect; then our end of the socket.
    await master?.stop()
    conn?.close(new TunnelError('NOT_CONNECTED', 'ssh: the tunnel is stopping'))
  }

  private async connectOnce(interactive: boolean): Promise<{ master: Master; conn: ProxyConnection }> {
    const socketPath = path.join(this.init.controlDir, `m-${randomBytes(4).toString('hex')}`)
    const master = new Master({
      ssh: this.init.ssh,
      args: this.init.argsFor(socketPath, interactive),
      socketPath,
      interactive,
      destination: this.init.destination,
      log: this.init.log,
      setpriv: this.init.setpriv,
      env: this.init.env,
    })
    master.on('line', (l: string) => this.init.log.verbose('ssh', `ssh: ${l}`))
    this.master = master
    await master.start()
    let conn: ProxyConnection
    try {
      const mux = await MuxClient.connect(socketPath)
      const pid = await mux.alive()
      if (pid !== master.pid) this.init.log.debug('ssh', `openssh: master pid ${master.pid} answers as ${pid}`)
      const { socket, leftover } = await mux.proxy()
      conn = new ProxyConnection(socket, this.budget, this.init.log)
      conn.feed(leftover)
    } catch (e) {
      await master.stop()
      throw e
    }
    if (this.isClosed()) {
      await master.stop()
      conn.close()
      throw new TunnelError('NOT_CONNECTED', 'ssh: session closed while connecting')
    }
    return { master, conn }
  }

  private adopt(master: Master, conn: ProxyConnection): void {
    this.conn = conn
    this.state = 'up'
    this.attempt = 0
    let lost = false
    const onLost = (why: TunnelError): void => {
      if (lost) return
      lost = true
      if (this.master !== master) return
      this.pastTotal += conn.stats.channelsTotal
      this.master = undefined
      this.conn = undefined
      // Clients of this connection get a reset now, not whenever the master's exit is seen.
      conn.close(why)
      void master.stop()
      if (this.state === 'closed') return
      this.state = 'down'
      this.init.log.warn('ssh', `connection to ${this.init.destination} lost: ${why.message}`)
      this.emit('down', why)
      this.scheduleRetry()
    }
    master.once('exit', (o: MasterOutcome) => onLost(mapMasterOutcome(o)))
    conn.once('close', (err?: Error) => {
      // The master normally exits right after; its stderr says why. Give it a moment.
      setTimeout(() => onLost(new TunnelError('SSH_CONNECT', `ssh: the OpenSSH master closed the connection${err ? `: ${errorMessage(err)}` : ''}`)), 200).unref()
    })
    this.emit('up')
  }

  private scheduleRetry(): void {
    if (this.state === 'closed') return
    this.attempt++
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** (this.attempt - 1))
    const delayMs = Math.round(Math.min(this.maxDelay, base * (0.8 + 0.4 * Math.random())))
    this.init.log.info('ssh', `reconnecting to ${this.init.destination} in ${(delayMs / 1000).toFixed(1)} s (attempt ${this.attempt})`)
    this.emit('reconnecting', { attempt: this.attempt, delayMs })
    this.retryTimer = setTimeout(() => void this.retry(), delayMs)
  }

  private async retry(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'connecting'
    try {
      const { master, conn } = await this.connectOnce(this.init.interactive())
      this.reconnects++
      this.init.log.info('ssh', `reconnected to ${this.init.destination}`)
      this.adopt(master, conn)
    } catch (e) {
      if (this.isClosed()) return
      const err = e instanceof TunnelError ? e : new TunnelError('SSH_CONNECT', errorMessage(e))
      const fatalKind = err.code === 'SSH_AUTH' || err.code === 'SSH_NEED_TTY' || err.code.startsWith('HOSTKEY_')
      if (fatalKind) {
        this.init.log.error('ssh', `reconnect: ${err.message}${err.hint ? ` (${err.hint})` : ''}`)
        this.attempt = Math.max(this.attempt, Math.ceil(Math.log2(this.maxDelay / this.minDelay)) + 1)
      } else {
        this.init.log.verbose('ssh', `reconnect failed: ${err.message}`)
      }
      this.state = 'down'
      this.scheduleRetry()
    }
  }
}

function notConnected(msg: string): TunnelError {
  return new TunnelError('NOT_CONNECTED', `ssh: ${msg}`, {
    hint: 'the tunnel keeps retrying; check the network path to the SSH server',
  })
}
