/**
 * Prompter on the controlling terminal. Like OpenSSH's read_passphrase(), it opens /dev/tty
 * rather than using stdin, so `… | subnet-tunnel` or a daemonised stdin still gets its questions
 * to the human, and it refuses (instead of hanging) when there is no controlling terminal.
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import * as tty from 'node:tty'
import { TunnelError } from '../../errors'
import type { Prompter } from './types'

export interface TtyPrompterOptions {
  /** Environment; SUBNET_TUNNEL_NO_TTY=1 forces non-interactive (tests, CI). */
  env?: NodeJS.ProcessEnv
  /** Terminal device; /dev/tty unless testing. */
  ttyPath?: string
  /** Where notice() writes; process.stderr by default (OpenSSH prints its banners there too). */
  writeNotice?: (text: string) => void
}

/** A Prompter that talks to /dev/tty. Questions are serialised: one at a time on the terminal. */
export function createTtyPrompter(opts: TtyPrompterOptions = {}): Prompter {
  const env = opts.env ?? process.env
  const ttyPath = opts.ttyPath ?? '/dev/tty'
  const writeNotice = opts.writeNotice ?? ((t: string) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'))
  let interactive: boolean | undefined
  let queue: Promise<unknown> = Promise.resolve()

  const isInteractive = (): boolean => {
    if (env.SUBNET_TUNNEL_NO_TTY === '1') return false
    if (interactive === undefined) {
      // Opening is the only reliable test: isatty(0) says nothing about a controlling
      // terminal (ENXIO when there is none, e.g. under systemd or setsid).
      try {
        closeSync(openSync(ttyPath, 'r+'))
        interactive = true
      } catch {
        interactive = false
      }
    }
    return interactive
  }

  return {
    isInteractive,
    ask(question, { echo, signal }) {
      if (!isInteractive()) {
        return Promise.reject(
          new TunnelError('SSH_NEED_TTY', `cannot ask "${firstLine(question)}": no terminal`, {
            hint: 'run from a terminal, or configure keys/known_hosts so no question is needed',
          }),
        )
      }
      const run = (): Promise<string> => (signal?.aborted ? Promise.reject(cancelled()) : askOnTty(ttyPath, question, echo, signal))
      const p = queue.then(run, run)
      queue = p.catch(() => undefined)
      return p
    },
    notice: writeNotice,
  }
}

/** Why a prompt was closed without an answer. */
export function cancelled(): TunnelError {
  return new TunnelError('NOT_CONNECTED', 'the prompt was cancelled: the connection closed')
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0]!.trim()
}

/**
 * Opens the tty, asks once, restores the terminal and closes it again. The terminal is in raw
 * mode for every question and we do the line discipline's job ourselves (echo for questions,
 * none for secrets; backspace, ^U, ^C, ^D): in canonical mode a half-typed line would wait in
 * the kernel's buffer after a cancelled prompt and reach the shell with the user's next Enter.
 */
function askOnTty(ttyPath: string, question: string, echo: boolean, signal?: AbortSignal): Promise<string> {
  // Separate descriptors for reading and writing: the ReadStream's handle closes its fd when
  // destroyed, and sharing one fd between two handles would close it twice.
  const outFd = openSync(ttyPath, 'w')
  let input: tty.ReadStream
  try {
    input = new tty.ReadStream(openSync(ttyPath, 'r'))
  } catch (e) {
    closeSync(outFd)
    throw e
  }
  const say = (s: string): void => void writeSync(outFd, s)
  return new Promise<string>((resolve, reject) => {
    let buf = ''
    let done = false
    const aborted = cancelled()
    const finish = (err: Error | undefined, answer?: string): void => {
      if (done) return
      done = true
      signal?.removeEventListener('abort', onAbort)
      input.removeListener('data', onData)
      // Raw mode must be undone before the fd goes away, or the user's shell is left without echo.
      if (input.isRaw) input.setRawMode(false)
      say(err === aborted ? ' (cancelled)\n' : '\n')
      input.destroy()
      closeSync(outFd)
      if (err) reject(err)
      else resolve(answer!)
    }
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish(undefined, buf)
        if (ch === '\u0003') {
          finish(new TunnelError('SSH_AUTH', 'interrupted at a prompt'))
          process.kill(process.pid, 'SIGINT')
          return
        }
        if (ch === '\u0004') return finish(new TunnelError('SSH_AUTH', 'end of input at a prompt'))
        if (ch === '\u007f' || ch === '\b') {
          if (echo && buf.length > 0) say('\b \b')
          buf = [...buf].slice(0, -1).join('')
        } else if (ch === '\u0015') {
          if (echo) say('\b \b'.repeat([...buf].length))
          buf = ''
        } else if (ch >= ' ') {
          buf += ch
          if (echo) say(ch)
        }
      }
    }
    const onAbort = (): void => finish(aborted)
    signal?.addEventListener('abort', onAbort, { once: true })
    input.on('error', (e) => finish(e))
    input.on('end', () => finish(new TunnelError('SSH_AUTH', 'terminal closed at a prompt')))
    input.setRawMode(true)
    input.on('data', onData)
    say(question)
  })
}

/**
 * A fake Prompter for tests: answers come from the list in order; asking past its end rejects.
 * Questions and notices are recorded for assertions.
 */
export function scriptedPrompter(
  answers: readonly string[],
  opts: { interactive?: boolean } = {},
): Prompter & { questions: { question: string; echo: boolean }[]; notices: string[] } {
  const rest = [...answers]
  const questions: { question: string; echo: boolean }[] = []
  const notices: string[] = []
  const interactive = opts.interactive ?? true
  return {
    questions,
    notices,
    isInteractive: () => interactive,
    async ask(question, { echo, signal }) {
      questions.push({ question, echo })
      if (signal?.aborted) throw cancelled()
      if (!interactive) throw new TunnelError('SSH_NEED_TTY', 'scripted prompter is not interactive')
      const a = rest.shift()
      if (a === undefined) throw new Error(`scripted prompter: no answer left for ${JSON.stringify(question)}`)
      return a
    },
    notice: (t) => void notices.push(t),
  }
}
