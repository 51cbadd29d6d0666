/**
 * Running commands for the end-to-end tests: always argv (no shell strings), always with a
 * timeout, always capturing both streams so a failing assertion can show what happened.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'

/** Repository root (test/e2e/lib → ../../..). */
export const REPO_DIR = path.resolve(__dirname, '..', '..', '..')
export const TESTBED_SCRIPT = path.join(REPO_DIR, 'scripts', 'testbed')
/**
 * The CLI under test. SUBNET_TUNNEL_E2E_CLI points the suites at another build (a packed
 * install, or a stand-in while developing the tests); default: this checkout's bin entry.
 */
export const CLI_BIN = process.env.SUBNET_TUNNEL_E2E_CLI ?? path.join(REPO_DIR, 'bin', 'subnet-tunnel.js')
export const CLI_MAIN = path.join(REPO_DIR, 'dist', 'cli', 'main.js')

export interface RunResult {
  /** Exit code; null when killed by a signal (see `signal`) or by the timeout. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** Wall time in milliseconds. */
  readonly ms: number
  readonly timedOut: boolean
}

export interface RunOptions {
  /** Kill (SIGKILL) after this many ms; default 30 s. */
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
  input?: string | Buffer
}

/** Runs argv to completion. Never rejects on a non-zero exit: tests assert on the result. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let timedOut = false
    child.stdout!.on('data', (b: Buffer) => out.push(b))
    child.stderr!.on('data', (b: Buffer) => err.push(b))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, opts.timeoutMs ?? 30_000)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms: Date.now() - started,
        timedOut,
      })
    })
    if (opts.input !== undefined) child.stdin!.end(opts.input)
  })
}

/** One-line summary of a result for assertion messages. */
export function describeRun(r: RunResult): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `signal ${r.signal}` : `exit ${r.code}`
  return `${how} after ${r.ms} ms; stdout: ${r.stdout.trim().slice(-500)}; stderr: ${r.stderr.trim().slice(-1500)}`
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
