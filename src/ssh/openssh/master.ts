/**
 * One OpenSSH ControlMaster process of ours: `ssh -M -S <private socket> -N …` does name
 * resolution, ProxyJump/ProxyCommand, host keys, authentication (prompting on the terminal
 * itself) and the encrypted transport. It is ready when its control socket appears — OpenSSH
 * links the socket into place only once it listens (mux.c muxserver_listen), after login.
 *
 * Lifetime: it is ours, so it must not outlive us.
 *  - `setpriv --pdeathsig TERM` (Linux, util-linux) makes the kernel signal it when we die,
 *    even by SIGKILL;
 *  - it runs with SIGINT and SIGHUP ignored (set by a `trap` before exec; ssh keeps an ignored
 *    disposition, clientloop.c): Ctrl-C on the terminal reaches the whole process group, but
 *    the tunnel, not ssh, decides what happens then (e.g. `exec -- psql`, where Ctrl-C only
 *    cancels a query);
 *  - stop() sends SIGTERM (ssh sends a disconnect and removes its socket), then SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import { mapMasterOutcome, type MasterOutcome } from './master-errors'

export interface MasterInit {
  /** The ssh binary. */
  readonly ssh: string
  /** Arguments after the binary (masterArgv). */
  readonly args: readonly string[]
  /** The control socket path given with -S. */
  readonly socketPath: string
  readonly interactive: boolean
  readonly destination: string
  readonly log: Logger
  /** Environment of the master (the caller removes what ssh must not see). */
  readonly env?: NodeJS.ProcessEnv
  /** `setpriv` for --pdeathsig, if installed (undefined: none). */
  readonly setpriv?: string
  /** How long to wait for the socket; default: none (ssh's ConnectTimeout and prompts decide). */
  readonly readyTimeoutMs?: number
}

/** stderr lines kept for error messages. */
const KEEP_LINES = 40

/**
 * Emits 'exit' (MasterOutcome) once the process is gone, ready or not, and 'line' (string)
 * for each line it writes on stderr.
 */
export class Master extends EventEmitter {
  private child: ChildProcess | undefined
  private readonly lines: string[] = []
  private outcome: MasterOutcome | undefined
  private exited: Promise<MasterOutcome> | undefined

  constructor(private readonly init: MasterInit) {
    super()
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get socketPath(): string {
    return this.init.socketPath
  }

  /** Whether the process has exited. */
  get isExited(): boolean {
    return this.outcome !== undefined
  }

  /** The last stderr lines (for logs). */
  get stderrTail(): readonly string[] {
    return this.lines
  }

  /**
   * Starts ssh and resolves once its control socket exists; rejects with the mapped error if
   * ssh exits first (wrong password, unknown host key, refused …).
   */
  async start(): Promise<void> {
    const { init } = this
    const shArgs = ['-c', 'trap "" INT HUP; exec "$0" "$@"', init.ssh, ...init.args]
    const [cmd, argv] = init.setpriv
      ? [init.setpriv, ['--pdeathsig', 'TERM', '--', '/bin/sh', ...shArgs]]
      : ['/bin/sh', shArgs]
    init.log.debug('ssh', `openssh: starting ${init.ssh} ${init.args.join(' ')}`)
    // stdin: /dev/null (ssh reads prompts from /dev/tty itself); stdout unused; stderr: ours.
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: init.env ?? process.env })
    this.child = child
    let buf = ''
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (s: string) => {
      buf += s
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '')
        buf = buf.slice(nl + 1)
        this.onLine(line)
      }
      if (buf.length > 4096) buf = buf.slice(-4096)
    })
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.outcome) return
        if (buf.trim() !== '') this.onLine(buf)
        buf = ''
        this.outcome = { code, signal, stderr: [...this.lines], interactive: init.interactive, destination: init.destination }
        resolve(this.outcome)
        this.emit('exit', this.outcome)
      }
      child.once('error', (e: NodeJS.ErrnoException) => {
        this.lines.push(`cannot run ${init.ssh}: ${e.code === 'ENOENT' ? 'not found' : e.message}`)
        finish(127, null)
      })
      // 'close', not 'exit': stderr is complete then.
      child.once('close', (code, signal) => finish(code, signal))
    })
    await this.waitReady()
  }

  private onLine(line: string): void {
    this.lines.push(line)
    if (this.lines.length > KEEP_LINES) this.lines.shift()
    this.emit('line', line)
  }

  /** Resolves when the socket exists; rejects when the process exits first. */
  private waitReady(): Promise<void> {
    const sock = this.init.socketPath
    return new Promise((resolve, reject) => {
      let done = false
      let watcher: fs.FSWatcher | undefined
      const finish = (err?: Error): void => {
        if (done) return
        done = true
        clearInterval(poll)
        clearTimeout(timer)
        watcher?.close()
        if (err) reject(err)
        else resolve()
      }
      const check = (): void => {
        if (!done && isSocket(sock)) finish()
      }
      // inotify tells at once; the poll covers file systems where watching is not possible.
      try {
        watcher = fs.watch(path.dirname(sock), check)
        watcher.on('error', () => {})
      } catch {
        watcher = undefined
      }
      const poll = setInterval(check, 100)
      const timer = this.init.readyTimeoutMs
        ? setTimeout(() => {
            void this.stop()
            finish(new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: no connection to ${this.init.destination} within ${this.init.readyTimeoutMs! / 1000} s`))
          }, this.init.readyTimeoutMs)
        : undefined
      void this.exited!.then((o) => finish(mapMasterOutcome(o)))
      check()
    })
  }

  /** Resolves with how it ended (immediately if it already has). */
  waitExit(): Promise<MasterOutcome> {
    return this.exited ?? Promise.resolve({ code: null, signal: null, stderr: [], interactive: false, destination: this.init.destination })
  }

  /** SIGTERM, then SIGKILL after `graceMs`; removes the socket file if ssh could not. */
  async stop(graceMs = 3000): Promise<void> {
    const child = this.child
    if (child && !this.outcome) {
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await this.exited
      clearTimeout(t)
    }
    try {
      if (isSocket(this.init.socketPath)) fs.unlinkSync(this.init.socketPath)
    } catch {
      /* gone already */
    }
  }
}

function isSocket(p: string): boolean {
  try {
    return fs.lstatSync(p).isSocket()
  } catch {
    return false
  }
}
