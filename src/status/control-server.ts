/**
 * The control socket `subnet-tunnel status` and `stop` talk to: one Unix socket per running
 * instance, `<dir>/<instanceId>.sock`. Protocol: the client sends one JSON line (`{"op":"status"}`
 * or `{"op":"stop"}`), the server answers one JSON line (`{"ok":true,"status":{…}}`,
 * `{"ok":true,"stopping":true}` or `{"ok":false,"error":"…"}`) and closes.
 *
 * Security: the status lists subnets, destinations and the processes behind them, so only our
 * user may connect. Unix socket permissions are not honoured by every OS, hence the belt and
 * braces: the directory is 0700 and owned by us (checked, not just created), the socket 0600.
 */
import { promises as fs } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { shellQuote } from '../observe/shell-quote'
import type { StatusSnapshot } from './status-types'

/** Longest request line we read; anything longer is an error, not a memory sink. */
export const MAX_REQUEST_BYTES = 4096
/**
 * A client must have sent its request and read the answer within this of connecting; trickling
 * bytes do not extend it. `status` answers in milliseconds.
 */
export const CONTROL_DEADLINE_MS = 5000
/**
 * Clients served at once; more are closed on accept. Only our own user can connect (0700
 * directory), but a runaway script looping on `status` must not eat the descriptors either.
 */
export const MAX_CONTROL_CLIENTS = 16
/** sun_path is 108 bytes on Linux, 104 on macOS; keep the smaller one (with the NUL). */
const MAX_SOCKET_PATH = 103

/** `$XDG_RUNTIME_DIR/subnet-tunnel`, else `/tmp/subnet-tunnel-<uid>`. */
export function defaultControlDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'subnet-tunnel')
  const uid = process.getuid?.() ?? os.userInfo().username
  return path.join(os.tmpdir(), `subnet-tunnel-${uid}`)
}

/**
 * Makes sure dir is a real directory (not a symlink) owned by us with no group/world access.
 * `create` makes it (0700) when missing; otherwise a missing dir resolves false. Anything
 * else wrong throws CONTROL: in a shared /tmp someone else could have made it first.
 */
export async function ensureControlDir(dir: string, create: boolean): Promise<boolean> {
  if (create) {
    try {
      await fs.mkdir(dir, { mode: 0o700 })
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') await fs.mkdir(dir, { recursive: true, mode: 0o700 })
      else if (code !== 'EEXIST') throw dirError(dir, errorMessage(e), e)
    }
  }
  let st
  try {
    st = await fs.lstat(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !create) return false
    throw dirError(dir, errorMessage(e), e)
  }
  const uid = process.getuid?.()
  if (!st.isDirectory()) throw dirError(dir, 'not a directory (a symlink?)')
  if (uid !== undefined && st.uid !== uid) throw dirError(dir, `owned by uid ${st.uid}, not by us (uid ${uid})`)
  if ((st.mode & 0o077) !== 0) {
    throw dirError(dir, `mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets other users in`)
  }
  return true
}

function dirError(dir: string, why: string, cause?: unknown): TunnelError {
  return new TunnelError('CONTROL', `control directory ${dir}: ${why}`, {
    hint: `remove it (rm -r ${shellQuote(dir)}) or set XDG_RUNTIME_DIR to a private directory`,
    cause,
  })
}

export interface ControlServerOptions {
  /** Directory for the socket; default defaultControlDir(). */
  readonly dir?: string
  /** Names the socket file; letters, digits, '-' and '_' only. */
  readonly instanceId: string
  /**
   * Builds the status document; called once per request. May be async. `brief`: for other
   * instances finding this one (start-up clash check, `stop`): no connection list and no
   * process lookups — every tunnel start on the machine asks every instance, and a full
   * status scans /proc for each open connection.
   */
  readonly snapshot: (opts: { brief: boolean }) => StatusSnapshot | Promise<StatusSnapshot>
  /** `{"op":"stop"}` (subnet-tunnel stop): begin an orderly stop; the answer goes out first. */
  readonly onStop?: () => void
  readonly log: Logger
  /** Tests: override CONTROL_DEADLINE_MS / MAX_CONTROL_CLIENTS. */
  readonly deadlineMs?: number
  readonly maxClients?: number
}

/** Serves status over `<dir>/<instanceId>.sock` until stop(). */
export class ControlServer {
  private server: net.Server | undefined
  private readonly clients = new Set<net.Socket>()
  readonly path: string
  private readonly dir: string

  constructor(private readonly opts: ControlServerOptions) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.instanceId)) {
      throw new TunnelError('INTERNAL', `invalid instance id "${opts.instanceId}"`)
    }
    this.dir = opts.dir ?? defaultControlDir()
    this.path = path.join(this.dir, `${opts.instanceId}.sock`)
  }

  /** Creates/checks the directory and listens. Rejects CONTROL with a hint. */
  async start(): Promise<void> {
    await ensureControlDir(this.dir, true)
    if (Buffer.byteLength(this.path) > MAX_SOCKET_PATH) {
      throw new TunnelError('CONTROL', `control socket path too long: ${this.path}`, {
        hint: 'set XDG_RUNTIME_DIR to a shorter directory',
      })
    }
    await this.removeStale()
    // allowHalfOpen: a client may send its request and shut down its side; it still gets the answer.
    const server = net.createServer({ allowHalfOpen: true }, (s) => this.serve(s))
    // Past it, net.Server closes each new connection as soon as it is accepted.
    server.maxConnections = this.opts.maxClients ?? MAX_CONTROL_CLIENTS
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(new TunnelError('CONTROL', `control socket ${this.path}: ${errorMessage(e)}`, { cause: e })),
      )
      server.listen(this.path, () => resolve())
    })
    server.removeAllListeners('error')
    server.on('error', (e) => this.opts.log.warn('ctl', `control socket: ${errorMessage(e)}`))
    this.server = server
    // The 0700 directory already keeps others out; 0600 also covers a later chmod of the dir.
    await fs.chmod(this.path, 0o600)
    this.opts.log.debug('ctl', `control socket ${this.path}`)
  }

  /** A socket file left by a crashed instance with our id refuses connections: remove it.
   * One that answers belongs to a live instance, which we must not steal. */
  private async removeStale(): Promise<void> {
    const alive = await new Promise<boolean | 'absent'>((resolve) => {
      const s = net.connect(this.path)
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ENOENT' ? 'absent' : false))
    })
    if (alive === 'absent') return
    if (alive) {
      throw new TunnelError('CONTROL', `another instance is already serving ${this.path}`, {
        hint: 'each instance needs its own id',
      })
    }
    await fs.unlink(this.path).catch(() => {})
  }

  private serve(s: net.Socket): void {
    this.clients.add(s)
    s.once('close', () => this.clients.delete(s))
    s.on('error', () => {})
    const deadline = setTimeout(() => s.destroy(), this.opts.deadlineMs ?? CONTROL_DEADLINE_MS)
    s.once('close', () => clearTimeout(deadline))
    let buf = ''
    let started = false
    let answered = false
    const answer = (body: object): void => {
      if (answered) return
      answered = true
      s.end(JSON.stringify(body) + '\n')
    }
    s.setEncoding('utf8')
    s.on('data', (chunk: string) => {
      if (started) return
      buf += chunk
      const nl = buf.indexOf('\n')
      if (nl < 0) {
        if (Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
          started = true
          answer({ ok: false, error: 'request line too long' })
        }
        return
      }
      const line = buf.slice(0, nl)
      started = true
      this.handle(line).then(answer, (e) => answer({ ok: false, error: errorMessage(e) }))
    })
    // A client that half-closes without a newline still gets an answer to what it sent.
    s.on('end', () => {
      if (started) return
      started = true
      if (buf.trim() === '') answer({ ok: false, error: 'empty request' })
      else this.handle(buf).then(answer, (e) => answer({ ok: false, error: errorMessage(e) }))
    })
  }

  private async handle(line: string): Promise<object> {
    if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) return { ok: false, error: 'request line too long' }
    let req: unknown
    try {
      req = JSON.parse(line)
    } catch {
      return { ok: false, error: 'request is not JSON' }
    }
    const op = typeof req === 'object' && req !== null ? (req as { op?: unknown }).op : undefined
    if (op === 'status') return { ok: true, status: await this.opts.snapshot({ brief: (req as { brief?: unknown }).brief === true }) }
    if (op === 'stop' && this.opts.onStop) {
      // After the answer is written: the stop closes this socket.
      const stop = this.opts.onStop
      setImmediate(stop)
      return { ok: true, stopping: true }
    }
    return { ok: false, error: `unknown op ${JSON.stringify(op ?? null)}` }
  }

  /** Closes the socket and removes its file. Safe to call twice. */
  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (!server) return
    for (const c of this.clients) c.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    // net.Server unlinks the path on close on most platforms; make sure.
    await fs.unlink(this.path).catch(() => {})
  }
}
