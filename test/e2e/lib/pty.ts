/**
 * A command on a pseudo-terminal, for prompts that only go to /dev/tty (ssh's passphrase and
 * keyboard-interactive prompts, the CLI's): `script` (util-linux) gives the command a pty as its
 * controlling terminal and relays it to our pipes; the test reads the output, waits for a prompt
 * and types the answer (what a user types ends with "\r", the Enter key on a terminal).
 *
 * The command runs through `script -c`, i.e. `$SHELL -c`: it is quoted here and prefixed with
 * `exec`, so it is script's own child (a shell left in between would take the terminal's signals).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { descendantsOf, waitGone } from './cli'

/** POSIX shell single-quoting. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

export interface PtyOptions {
  /** argv prefix that script itself runs under, e.g. tb.nsArgv('client', []) for the client namespace. */
  prefix?: readonly string[]
  env?: NodeJS.ProcessEnv
}

export class PtyProcess {
  private out = ''
  private readonly exited: Promise<number | null>

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => (this.out += d.toString('utf8')))
    child.stderr!.on('data', (d: Buffer) => (this.out += d.toString('utf8')))
    this.exited = new Promise((resolve) => child.on('close', (code) => resolve(code)))
  }

  /** Starts argv on a new pty (script -qfec: quiet, flush, exit with the command's status). */
  static start(argv: readonly string[], opts: PtyOptions = {}): PtyProcess {
    const cmd = 'exec ' + argv.map(shellQuote).join(' ')
    const full = [...(opts.prefix ?? []), 'script', '-qfec', cmd, '/dev/null']
    // TERM=dumb: no colour or cursor sequences in what the test reads.
    const env = { ...(opts.env ?? process.env), TERM: 'dumb' }
    return new PtyProcess(spawn(full[0]!, full.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] }))
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  /** Everything the terminal showed so far (a pty turns "\n" into "\r\n"). */
  get output(): string {
    return this.out
  }

  /** How many times re matched the output so far (re gets the g flag). */
  count(re: RegExp): number {
    return [...this.out.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'))].length
  }

  /** Resolves once the output after `from` (an offset into output) matches re; rejects after ms. */
  async waitFor(re: RegExp, ms = 15_000, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms
    for (;;) {
      const m = this.out.slice(from).match(re)
      if (m) return m
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`pty: exited before ${re} showed; output:\n${this.out.slice(-3000)}`)
      }
      if (Date.now() > deadline) throw new Error(`pty: timed out waiting for ${re}; output:\n${this.out.slice(-3000)}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** Types text into the terminal. */
  write(text: string): void {
    this.child.stdin!.write(text)
  }

  /** Waits for the command to exit and returns its status; kills it (SIGKILL) after ms. */
  async exit(ms = 15_000): Promise<number | null> {
    const timer = setTimeout(() => void this.kill(), ms)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
      this.child.stdin!.end()
    }
  }

  /** SIGKILLs script and whatever runs under it, and waits until they are gone. */
  async kill(): Promise<void> {
    const pid = this.child.pid
    if (pid === undefined || this.child.exitCode !== null) return
    const pids = [...descendantsOf(pid), pid]
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL')
      } catch {
        // gone already
      }
    }
    await waitGone(pids)
  }
}
