import { spawn } from 'node:child_process'
import { closeSync, writeSync } from 'node:fs'
import type { Readable } from 'node:stream'
import type { SecretEnv } from './secret-env'

/**
 * -f, like ssh -f: the process the user started runs a copy of itself with the same arguments
 * and waits. The copy brings the tunnel up (prompting on the terminal if it must: it keeps the
 * controlling terminal), then sends its up line on file descriptor 3; the first process prints
 * it and exits 0, and the copy stays in the background.
 *
 * The copy's stderr is a pipe to the first process, relayed until then: an inherited stderr
 * would keep `out=$(subnet-tunnel -f …)` or a CI step waiting for EOF forever. After it is
 * detached the copy writes no more messages (`status` and --audit-log show what it does).
 * If the copy fails, its error has been relayed and the first process exits with its code.
 */
const ENV = 'SUBNET_TUNNEL_BACKGROUND_FD'

export function isBackgroundChild(): boolean {
  return process.env[ENV] === '3'
}

/**
 * `secrets`: the secret variables this process took from its environment at start-up
 * (secret-env.ts). The copy needs them too; they go into its environment only, and it takes
 * them out again first thing, like any start.
 */
export function runInBackground(secrets: SecretEnv = {}): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...secrets, [ENV]: '3' },
  })
  const ready = child.stdio[3] as Readable
  const errors = child.stderr!
  errors.pipe(process.stderr, { end: false })
  return new Promise((resolve) => {
    let settled = false
    let buf = ''
    const settle = (code: number): void => {
      if (settled) return
      settled = true
      resolve(code)
    }
    ready.setEncoding('utf8')
    ready.on('data', (s: string) => {
      buf += s
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      process.stderr.write(buf.slice(0, nl + 1))
      // Detach: nothing of ours keeps the event loop (or the copy) tied to us.
      errors.unpipe(process.stderr)
      errors.destroy()
      ready.destroy()
      child.unref()
      settle(0)
    })
    ready.on('error', () => {})
    errors.on('error', () => {})
    child.on('exit', (code) => settle(code ?? 1))
  })
}

/** In the background copy: hand the up line to the waiting parent and stop writing to stderr. */
export function notifyParentUp(upLine: string): void {
  process.stderr.on('error', () => {}) // the pipe closes when the parent leaves
  try {
    writeSync(3, upLine + '\n')
    closeSync(3)
  } catch {
    /* the parent is gone already: nothing to tell */
  }
}
