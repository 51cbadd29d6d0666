/**
 * Client side of OpenSSH's ControlMaster socket (PROTOCOL.mux): the hello exchange, then
 * either control requests (alive check, remote forwards) or the switch to proxy mode.
 *
 * Every step has a deadline: a socket that accepts but never answers (a stale master, or
 * something that is not a master at all) fails with a typed error instead of hanging.
 */
import net from 'node:net'
import { TunnelError, errorMessage } from '../../errors'
import { FrameSplitter } from './wire'
import { MUX, MUX_FWD, MUX_FWD_UNIX_PORT, MUX_VERSION, type MuxReply, muxForward, muxHello, muxSimple, parseMuxReply } from './mux-messages'

/** A remote forward (MUX_FWD_REMOTE): the bastion listens, the master connects to `connectPath`. */
export interface MuxRemoteForward {
  /** Address on the server ("" = all, "localhost" = loopback, as ssh -R). */
  readonly listenHost: string
  /** 0: the server picks one (the answer carries it). */
  readonly listenPort: number
  /** Unix socket the master connects each forwarded connection to. */
  readonly connectPath: string
}

const DEFAULT_TIMEOUT_MS = 10_000

function muxError(message: string, cause?: unknown): TunnelError {
  return new TunnelError('SSH_CONNECT', `openssh: control socket: ${message}`, {
    hint: 'the ssh master behind the control socket is not answering; it is restarted automatically',
    cause,
  })
}

/**
 * One connection to a control socket. connect() does the hello exchange; then use request
 * methods, or proxy() once (after which this object no longer owns the socket).
 */
export class MuxClient {
  private readonly splitter: FrameSplitter
  private nextRequest = 1
  private readonly waiting = new Map<number, { resolve: (r: MuxReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  private hello: { resolve: () => void; reject: (e: Error) => void } | undefined
  private failed: Error | undefined
  private proxied = false

  private constructor(
    readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.splitter = new FrameSplitter((f) => this.onFrame(f))
    socket.on('data', this.onData)
    socket.on('error', (e) => this.fail(muxError(errorMessage(e), e)))
    socket.on('close', () => this.fail(muxError('closed by the master')))
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.splitter.push(chunk)
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)))
      this.socket.destroy()
    }
  }

  /** Connects and exchanges hellos; rejects SSH_CONNECT (with the errno in the message). */
  static connect(path: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<MuxClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path })
      const client = new MuxClient(socket, timeoutMs)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(muxError(`no hello within ${timeoutMs / 1000} s`))
      }, timeoutMs)
      client.hello = {
        resolve: () => {
          clearTimeout(timer)
          resolve(client)
        },
        reject: (e) => {
          clearTimeout(timer)
          socket.destroy()
          reject(e)
        },
      }
      socket.once('connect', () => socket.write(muxHello()))
    })
  }

  /** MUX_C_ALIVE_CHECK: the master's pid. */
  async alive(): Promise<number> {
    const r = await this.request(muxSimple(MUX.C_ALIVE_CHECK, this.nextRequest), this.nextRequest++)
    if (r.type !== 'alive') throw unexpected(r, 'alive check')
    return r.pid
  }

  /**
   * MUX_C_OPEN_FWD of a remote forward. Resolves with the server's port (the one asked for,
   * or the one it picked for port 0); rejects with the master's reason.
   */
  async openRemoteForward(f: MuxRemoteForward): Promise<number> {
    const id = this.nextRequest++
    const r = await this.request(
      muxForward(MUX.C_OPEN_FWD, id, {
        kind: MUX_FWD.REMOTE,
        listenHost: f.listenHost,
        listenPort: f.listenPort,
        connectHost: f.connectPath,
        connectPort: MUX_FWD_UNIX_PORT,
      }),
      id,
    )
    if (r.type === 'remote-port') return r.port
    if (r.type === 'ok') return f.listenPort
    throw refusal(r, 'remote forward')
  }

  /** MUX_C_CLOSE_FWD of a forward opened with openRemoteForward (port: the bound one). */
  async closeRemoteForward(f: MuxRemoteForward, boundPort: number): Promise<void> {
    const id = this.nextRequest++
    const r = await this.request(
      muxForward(MUX.C_CLOSE_FWD, id, {
        kind: MUX_FWD.REMOTE,
        listenHost: f.listenHost,
        listenPort: boundPort,
        connectHost: f.connectPath,
        connectPort: MUX_FWD_UNIX_PORT,
      }),
      id,
    )
    if (r.type !== 'ok') throw refusal(r, 'close remote forward')
  }

  /**
   * MUX_C_PROXY: resolves with the socket, now in proxy mode, and any bytes that followed
   * MUX_S_PROXY. This client is done afterwards.
   */
  async proxy(): Promise<{ socket: net.Socket; leftover: Buffer }> {
    const id = this.nextRequest++
    const r = await this.request(muxSimple(MUX.C_PROXY, id), id, () => this.splitter.stop())
    if (r.type !== 'proxy') throw refusal(r, 'proxy mode')
    this.proxied = true
    this.socket.off('data', this.onData)
    this.socket.removeAllListeners('error')
    this.socket.removeAllListeners('close')
    return { socket: this.socket, leftover: this.splitter.takeRest() }
  }

  close(): void {
    if (!this.proxied) this.socket.destroy()
  }

  private request(frame: Buffer, id: number, onReply?: () => void): Promise<MuxReply> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(muxError(`no answer within ${this.timeoutMs / 1000} s`))
        this.socket.destroy()
      }, this.timeoutMs)
      this.waiting.set(id, {
        resolve: (r) => {
          onReply?.()
          resolve(r)
        },
        reject,
        timer,
      })
      this.socket.write(frame)
    })
  }

  private onFrame(frame: Buffer): void {
    const r = parseMuxReply(frame)
    if (r.type === 'hello') {
      const h = this.hello
      this.hello = undefined
      if (!h) return
      if (r.version !== MUX_VERSION) h.reject(muxError(`the master speaks mux protocol ${r.version}, not ${MUX_VERSION}`))
      else h.resolve()
      return
    }
    if (r.type === 'other') return
    const w = this.waiting.get(r.requestId)
    if (!w) return
    this.waiting.delete(r.requestId)
    clearTimeout(w.timer)
    w.resolve(r)
  }

  private fail(e: Error): void {
    if (this.failed || this.proxied) return
    this.failed = e
    this.hello?.reject(e)
    this.hello = undefined
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer)
      w.reject(e)
    }
    this.waiting.clear()
  }
}

function unexpected(r: MuxReply, what: string): TunnelError {
  return muxError(`unexpected answer to ${what} (${r.type})`)
}

/** The master said no: MUX_S_FAILURE / PERMISSION_DENIED carry its reason. */
function refusal(r: MuxReply, what: string): TunnelError {
  if (r.type === 'failure' || r.type === 'denied') {
    return new TunnelError('SSH_CONNECT', `openssh: ${what}: ${r.reason || r.type}`, {
      hint: r.type === 'denied' ? 'the master refused (ControlMaster=ask? or a locked-down master)' : undefined,
    })
  }
  return unexpected(r, what)
}
