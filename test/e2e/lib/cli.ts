/**
 * Runs the real CLI (bin/subnet-tunnel.js → dist/cli/main.js) inside a testbed's client
 * namespace.
 *
 * "Up" detection — what the CLI must print: exactly one line on stderr once SSH is
 * authenticated AND the redirect rules are in place, containing the word "up:" (for example
 * `subnet-tunnel up: remote root@10.250.0.1:22, subnets 10.251.0.0/24, method nat, listener
 * 127.0.0.1:40123`). UP_LINE below is what the tests match; lines may carry a timestamp and
 * a `[cli]` tag in front. The tests also expect the method name (nat|nft) in that line.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { CLI_BIN, CLI_MAIN, run, type RunOptions, type RunResult } from './exec'
import type { Testbed } from './testbed'

/** Matches the CLI's "tunnel is up" line (see the module comment). */
export const UP_LINE = /\bup:|\btunnel (is )?up\b/i

/** Environment for the CLI: never a TTY prompt, no agent from the developer's session (a test's own agent in extra stays). */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SUBNET_TUNNEL_NO_TTY: '1' }
  delete env.SSH_AUTH_SOCK
  return { ...env, ...extra }
}

/**
 * The SSH engine the CLI runs with in this test run: $SUBNET_TUNNEL_SSH_ENGINE (each e2e project
 * sets it, see vitest.config.ts), else what auto picks here (OpenSSH is installed: openssh).
 */
export function engineUnderTest(): 'openssh' | 'builtin' {
  return process.env.SUBNET_TUNNEL_SSH_ENGINE === 'builtin' ? 'builtin' : 'openssh'
}

/** The command line of a process (NUL-separated in /proc), '' once it is gone. */
export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')
  } catch {
    return ''
  }
}

/**
 * argv that runs the CLI with args in the client namespace. `bin`: another executable instead of
 * this checkout's launcher (an installed `subnet-tunnel`), run as it is (its #! line picks node).
 */
export function cliArgv(tb: Testbed, args: readonly string[], wrap: readonly string[] = [], bin?: string): string[] {
  return tb.nsArgv('client', [...wrap, ...(bin !== undefined ? [bin] : [process.execPath, CLI_BIN]), ...args])
}

/** The usual connection arguments: the testbed's ssh_config and its `bastion` alias. */
export function remoteArgs(tb: Testbed, alias = 'bastion'): string[] {
  return ['-F', tb.env.sshConfig, '-r', alias]
}

/** Throws a clear error when the CLI has not been built (npm test builds before vitest). */
export function assertCliBuilt(): void {
  if (process.env.SUBNET_TUNNEL_E2E_CLI) return
  if (!existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} is missing: run \`npm run build\` (npm test builds first)`)
}

/** Runs the CLI to completion (error cases, `cleanup`). */
export function runCli(tb: Testbed, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(cliArgv(tb, args), { timeoutMs: 30_000, ...opts, env: cliEnv(opts.env) })
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

const running = new Set<ChildProcess>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const c of running) {
      try {
        c.kill('SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

/** A running tunnel: the CLI process in the client namespace (ip netns exec execs, so pid is node's). */
export class Tunnel {
  private err = ''
  /** Epoch ms just before spawning. */
  readonly startedAt: number
  /** Epoch ms when the up line arrived. */
  upAt = 0
  /** The up line itself. */
  upLine = ''
  readonly exited: Promise<Exit>
  private exit: Exit | undefined

  private constructor(private readonly child: ChildProcess) {
    this.startedAt = Date.now()
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (s: string) => (this.err += s))
    child.stdout!.resume()
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal }
        running.delete(child)
        resolve(this.exit)
      })
    })
  }

  get pid(): number {
    return this.child.pid!
  }

  /** Everything the CLI wrote on stderr so far. */
  get stderr(): string {
    return this.err
  }

  get hasExited(): boolean {
    return this.exit !== undefined
  }

  /** Milliseconds from spawn to the up line. */
  get msToUp(): number {
    return this.upAt - this.startedAt
  }

  /**
   * Starts the CLI in the client namespace and resolves once it printed its up line.
   * Rejects (after killing it) when it exits first or the line does not come in time.
   */
  static async start(
    tb: Testbed,
    args: readonly string[],
    opts: { env?: NodeJS.ProcessEnv; upTimeoutMs?: number; wrap?: readonly string[]; bin?: string } = {},
  ): Promise<Tunnel> {
    installExitHook()
    if (opts.bin === undefined) assertCliBuilt()
    // wrap: a command prefix inside the namespace, e.g. setpriv to run as another user.
    const argv = cliArgv(tb, args, opts.wrap, opts.bin)
    const child = spawn(argv[0]!, argv.slice(1), { env: cliEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(child)
    const t = new Tunnel(child)
    await t.waitUp(opts.upTimeoutMs ?? 30_000, argv)
    return t
  }

  private waitUp(timeoutMs: number, argv: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const line = this.err.split('\n').find((l) => UP_LINE.test(l))
        if (line === undefined) return false
        this.upAt = Date.now()
        this.upLine = line
        return true
      }
      const onData = (): void => {
        if (check()) done()
      }
      const fail = (why: string): void => {
        cleanupListeners()
        this.child.kill('SIGKILL')
        reject(new Error(`subnet-tunnel ${why}\n  argv: ${argv.join(' ')}\n  stderr:\n${this.err}`))
      }
      const timer = setTimeout(() => fail(`printed no up line within ${timeoutMs} ms`), timeoutMs)
      const done = (): void => {
        cleanupListeners()
        resolve()
      }
      const onExit = (code: number | null, signal: string | null): void => {
        if (!check()) fail(`exited (code ${code}, signal ${signal}) before its up line`)
      }
      const cleanupListeners = (): void => {
        clearTimeout(timer)
        this.child.stderr!.off('data', onData)
        this.child.off('exit', onExit)
      }
      this.child.stderr!.on('data', onData)
      this.child.on('exit', onExit)
      if (check()) done()
    })
  }

  /** Sends a signal and waits for the exit (SIGKILL after timeoutMs). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<Exit> {
    if (this.exit) return this.exit
    this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  /** Pids of all descendants of the CLI (the privileged helper, and whatever it runs). */
  descendants(): number[] {
    return descendantsOf(this.pid)
  }
}

/** Walks /proc for the process tree under pid (children before grandchildren). */
export function descendantsOf(pid: number): number[] {
  const parentOf = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited meanwhile
    }
    // Field 2 (comm) may contain spaces and parentheses: ppid is the 2nd field after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    const list = parentOf.get(ppid) ?? []
    list.push(Number(entry))
    parentOf.set(ppid, list)
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    for (const c of parentOf.get(queue.shift()!) ?? []) {
      out.push(c)
      queue.push(c)
    }
  }
  return out
}

/**
 * Waits until the pids are gone or withinMs passes; returns the survivors. A SIGKILLed orphan
 * stays a zombie until init reaps it, and some container inits reap lazily; a zombie has exited
 * (counts as gone) unless `reaped` is asked for — a liveness check by kill(pid, 0), as a journal
 * cleanup may do, still sees a zombie as alive.
 */
export async function waitGone(pids: readonly number[], withinMs = 5_000, opts: { reaped?: boolean } = {}): Promise<number[]> {
  const deadline = Date.now() + withinMs
  const alive = (p: number): boolean => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      return opts.reaped === true || stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
    } catch {
      return false
    }
  }
  for (;;) {
    const left = pids.filter(alive)
    if (left.length === 0 || Date.now() >= deadline) return left
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Kills every tunnel still running (afterAll safety net). */
export async function killAllTunnels(): Promise<void> {
  const waits: Promise<unknown>[] = []
  for (const c of running) {
    waits.push(new Promise((r) => c.once('exit', r)))
    c.kill('SIGKILL')
  }
  await Promise.race([Promise.all(waits), new Promise((r) => setTimeout(r, 5_000))])
}
