/**
 * Runs argv lists: the real executor (child_process.execFile, never a shell) and the two ways
 * plans are run — apply (stop at the first failure, undo, throw FW_APPLY) and revert (run every
 * step, tolerate "already gone").
 */
import { execFile } from 'node:child_process'
import { TunnelError } from '../../errors'
import type { ExecResult, Executor, Plan } from './types'

/**
 * A fixed PATH for the privileged helper: rule tools live in sbin directories that a user's PATH
 * (or `su` without `-`) often lacks, and a root process should not search a caller-chosen PATH.
 */
export const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface RealExecutorOptions {
  /** Per-command timeout; a hung iptables (xtables lock held forever) must not hang us. */
  timeoutMs?: number
  /** PATH to search; SAFE_PATH by default. */
  path?: string
}

/**
 * The real executor. Never throws for a failing command: a missing binary gives code 127 and a
 * timeout code 124 (the shell conventions), so callers handle every failure the same way.
 */
export function realExecutor(opts: RealExecutorOptions = {}): Executor {
  const timeout = opts.timeoutMs ?? 30_000
  // Only these two: rule tools need nothing else, and the helper's environment is not theirs.
  const env = { PATH: opts.path ?? SAFE_PATH, LC_ALL: 'C' }
  return {
    run(argv, runOpts) {
      return new Promise<ExecResult>((resolve) => {
        const [file, ...args] = argv
        const child = execFile(
          file,
          args,
          { timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env, encoding: 'utf8' },
          (err, stdout, stderr) => {
            if (!err) return resolve({ code: 0, stdout, stderr })
            const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string }
            if (e.code === 'ENOENT') return resolve({ code: 127, stdout, stderr: `${file}: not found` })
            if (e.killed || e.signal) {
              return resolve({ code: 124, stdout, stderr: `${file}: timed out after ${timeout} ms` })
            }
            const code = typeof e.code === 'number' ? e.code : 1
            resolve({ code, stdout, stderr: stderr || e.message })
          },
        )
        // An unread stdin would be fine, but nft -f - waits for EOF: always end it.
        child.stdin?.on('error', () => {})
        child.stdin?.end(runOpts?.input ?? '')
      })
    },
  }
}

/** First line of a command's error output, for one-line messages. */
export function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '')?.trim() ?? ''
}

/** Short label of an argv for messages: "nft: add rule", "iptables: -A". */
export function stepLabel(argv: readonly string[]): string {
  const bin = argv[0] ?? '?'
  if (bin === 'nft') return `nft: ${argv.slice(1, 3).join(' ')}`
  if (bin === 'ip') return `ip: ${argv.slice(1).filter((a) => !a.startsWith('-')).slice(0, 2).join(' ')}`
  const op = argv.find((a) => /^-[NAIDFXL]$/.test(a))
  return op ? `${bin}: ${op}` : bin
}

/**
 * Errors that mean "the object is already gone": fine during revert and cleanup.
 * iptables: "No chain/target/match by that name", "Bad rule (does a matching rule exist…)",
 * "Chain '…' does not exist"; nft: "No such file or directory"; ip: see below.
 */
export function isMissingObjectError(stderr: string): boolean {
  // ip (tun backend): `link del` → 'Cannot find device "st…"'; `route flush table T` → "FIB
  // table does not exist" (covered by "does not exist"); `rule del` → "No such file or directory".
  return /No chain\/target\/match|does a matching rule exist|does not exist|No such file or directory|Cannot find device/i.test(stderr)
}

/** Runs steps in order; throws FW_APPLY at the first failure, with the failed step in the message. */
export async function runSteps(exec: Executor, steps: readonly string[][]): Promise<void> {
  for (const argv of steps) {
    const r = await exec.run(argv)
    if (r.code !== 0) {
      const detail = firstLine(r.stderr) || `exit ${r.code}`
      throw new TunnelError('FW_APPLY', `${stepLabel(argv)}: ${detail}`, {
        hint: r.code === 127 ? 'install the firewall tools (iptables or nftables)' : 'run with -v for details; try the other --method',
        cause: { argv, ...r },
      })
    }
  }
}

/** Outcome of a revert: steps that failed for a reason other than "already gone". */
export interface RevertOutcome {
  readonly failed: Array<{ argv: string[]; error: string }>
}

/** Runs every revert step (never stops early) and reports the real failures. */
export async function revertSteps(exec: Executor, steps: readonly string[][]): Promise<RevertOutcome> {
  const failed: RevertOutcome['failed'] = []
  for (const argv of steps) {
    const r = await exec.run(argv)
    if (r.code !== 0 && !isMissingObjectError(r.stderr)) {
      failed.push({ argv: [...argv], error: `${stepLabel(argv)}: ${firstLine(r.stderr) || `exit ${r.code}`}` })
    }
  }
  return { failed }
}

/**
 * Applies a plan. On failure it runs the plan's full revert list (whose steps tolerate objects
 * that were never created) BEFORE throwing, so a failed apply leaves nothing behind; the thrown
 * FW_APPLY names the step that failed.
 */
export async function applyPlan(exec: Executor, plan: Plan): Promise<void> {
  try {
    await runSteps(exec, plan.apply)
  } catch (e) {
    await revertSteps(exec, plan.revert)
    throw e
  }
}
