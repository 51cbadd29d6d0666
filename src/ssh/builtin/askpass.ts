/**
 * SSH_ASKPASS, as OpenSSH's read_passphrase() (readpass.c) uses it: a program that gets the
 * prompt as its argument and prints the answer. Used when there is no terminal and a display is
 * set (DISPLAY / WAYLAND_DISPLAY), or always with SSH_ASKPASS_REQUIRE=force; =prefer uses it
 * whenever a display is set, =never not at all. The program inherits our environment (a GUI
 * askpass needs DISPLAY, XAUTHORITY, …; secrets we were given are out of it by then).
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { TunnelError } from '../../errors'
import { cancelled, createTtyPrompter, type TtyPrompterOptions } from './tty-prompter'
import type { Prompter } from './types'

/** Where distributions install ssh-askpass when SSH_ASKPASS is unset (OpenSSH's default path). */
const DEFAULT_ASKPASS = ['/usr/bin/ssh-askpass', '/usr/lib/ssh/ssh-askpass', '/usr/libexec/openssh/ssh-askpass', '/usr/X11R6/bin/ssh-askpass']

/** The longest answer we read (a passphrase or an OTP is far shorter). */
const MAX_ANSWER = 64 * 1024

export interface AskpassDecision {
  /** The program to run, or undefined when askpass is not to be used. */
  readonly program?: string
  /** Askpass is used even when a terminal exists (force, or prefer with a display). */
  readonly overTty: boolean
}

/** Whether (and which) askpass program read_passphrase() would run. */
export function askpassDecision(env: NodeJS.ProcessEnv, exists: (p: string) => boolean = isExecutable): AskpassDecision {
  let allow = Boolean(env.DISPLAY) || Boolean(env.WAYLAND_DISPLAY)
  let overTty = false
  const require = env.SSH_ASKPASS_REQUIRE?.toLowerCase()
  if (require === 'force') {
    allow = true
    overTty = true
  } else if (require === 'prefer') {
    overTty = allow
  } else if (require === 'never') {
    allow = false
  }
  if (!allow) return { overTty: false }
  const program = env.SSH_ASKPASS || DEFAULT_ASKPASS.find(exists)
  return program ? { program, overTty } : { overTty: false }
}

/**
 * The prompter of the built-in engine: the terminal, or SSH_ASKPASS where OpenSSH would use it.
 * Notices always go to stderr.
 */
export function createPrompter(opts: TtyPrompterOptions = {}): Prompter {
  const env = opts.env ?? process.env
  const tty = createTtyPrompter(opts)
  const askpass = askpassDecision(env)
  const useAskpass = (): boolean => askpass.program !== undefined && (askpass.overTty || !tty.isInteractive())
  return {
    isInteractive: () => tty.isInteractive() || askpass.program !== undefined,
    ask(question, o) {
      if (!useAskpass()) return tty.ask(question, o)
      return runAskpass(askpass.program!, question, env, o.signal)
    },
    notice: (t) => tty.notice(t),
  }
}

/** Runs the askpass program once; its first output line is the answer. Rejects on a non-zero exit. */
export function runAskpass(program: string, prompt: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled())
    const child = spawn(program, [prompt], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = Buffer.alloc(0)
    let done = false
    const finish = (err: Error | undefined, answer?: string): void => {
      if (done) return
      done = true
      signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve(answer!)
    }
    const onAbort = (): void => {
      child.kill('SIGTERM')
      finish(cancelled())
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    child.stdout!.on('data', (d: Buffer) => {
      if (out.length + d.length > MAX_ANSWER) {
        child.kill('SIGTERM')
        return finish(new TunnelError('SSH_AUTH', `SSH_ASKPASS ${program}: answer longer than ${MAX_ANSWER} bytes`))
      }
      out = Buffer.concat([out, d])
    })
    child.on('error', (e) => finish(new TunnelError('SSH_AUTH', `SSH_ASKPASS ${program}: ${e.message}`, { cause: e })))
    child.on('close', (code, sig) => {
      if (code !== 0) {
        // OpenSSH: a failed askpass is "no answer" (the user pressed Cancel).
        return finish(new TunnelError('SSH_AUTH', `SSH_ASKPASS ${program} ${sig ? `was killed by ${sig}` : `exited with code ${code}`}: no answer`))
      }
      const text = out.toString('utf8')
      const nl = text.search(/\r?\n/)
      finish(undefined, nl < 0 ? text : text.slice(0, nl))
    })
  })
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}
