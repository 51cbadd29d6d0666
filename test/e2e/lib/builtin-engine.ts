/**
 * Helpers for the built-in engine's tests against the testbed's auth variants (issue 14): the CLI
 * run once through an alias (`exec -- true`: up, then down), a private ssh-agent with chosen keys,
 * a throwaway ssh_config, and an extra sshd in the bastion namespace made from a variant's config
 * with a few lines changed (LoginGraceTime, Banner, …).
 */
import { spawn } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCli, waitGone } from './cli'
import { describeRun, run, type RunResult } from './exec'
import type { Testbed } from './testbed'

/** These files test the built-in engine whatever project runs them (the e2e project defaults to openssh). */
export const BUILTIN = ['--ssh-engine', 'builtin'] as const

/** The CLI once through `alias` of the testbed's ssh_config: connect, run `true` through the tunnel, exit. */
export function cliOnce(tb: Testbed, alias: string, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}, configFile = tb.env.sshConfig): Promise<RunResult> {
  return runCli(tb, [...BUILTIN, '-F', configFile, '-r', alias, ...extra, tb.env.privateNet, 'exec', '--', 'true'], { env, timeoutMs: 60_000 })
}

/** A fresh 0700 directory under /tmp; remove it with rmSync(dir, { recursive: true }). */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(path.join(tmpdir(), `st-e2e-${prefix}-`))
  chmodSync(d, 0o700)
  return d
}

/** Copies a key (and its .pub when `withPub`) into dir, mode 0600; returns the new path. */
export function copyKey(src: string, dir: string, name: string, opts: { withPub?: boolean; privateToo?: boolean } = {}): string {
  const dst = path.join(dir, name)
  if (opts.privateToo !== false) {
    copyFileSync(src, dst)
    chmodSync(dst, 0o600)
  }
  if (opts.withPub !== false) copyFileSync(`${src}.pub`, `${dst}.pub`)
  return dst
}

/** A Host block per entry: `{ alias: ['HostName x', 'Port 22', …] }`. */
export function writeSshConfig(file: string, hosts: Record<string, readonly string[]>): string {
  const text = Object.entries(hosts)
    .map(([alias, lines]) => `Host ${alias}\n${lines.map((l) => `  ${l}\n`).join('')}`)
    .join('\n')
  writeFileSync(file, text, { mode: 0o600 })
  return file
}

/** The lines every host of a throwaway config needs to reach the testbed's bastion as root. */
export function bastionLines(tb: Testbed, port: number, knownHosts = tb.env.knownHosts): string[] {
  return [
    `HostName ${tb.env.bastionIp}`, `Port ${port}`, 'User root', `UserKnownHostsFile ${knownHosts}`,
    'GlobalKnownHostsFile /dev/null', 'StrictHostKeyChecking yes', 'UpdateHostKeys no',
  ]
}

export interface OwnAgent {
  readonly sock: string
  /** Ends the agent by its pid. */
  stop(): Promise<void>
}

/** An ssh-agent of our own (socket in `dir`) holding `keys`, added in that order. */
export async function ownAgent(dir: string, keys: readonly string[]): Promise<OwnAgent> {
  const sock = path.join(dir, `agent-${process.pid}-${Date.now()}.sock`)
  const child = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
  const pid = child.pid!
  const stop = async (): Promise<void> => {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      // gone already
    }
    await waitGone([pid])
  }
  for (let i = 0; i < 250 && !isSocket(sock); i++) await new Promise((r) => setTimeout(r, 20))
  for (const k of keys) {
    const r = await run(['ssh-add', '-q', k], { env: { ...process.env, SSH_AUTH_SOCK: sock } })
    if (r.code !== 0) {
      await stop()
      throw new Error(`ssh-add ${k}: ${describeRun(r)}`)
    }
  }
  return { sock, stop }
}

/** Makes `n` throwaway ed25519 keys in dir (no passphrase); returns their paths. */
export async function makeKeys(dir: string, n: number, prefix = 'other'): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `${prefix}${i}`)
    const r = await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `${prefix}${i}`, '-f', f])
    if (r.code !== 0) throw new Error(describeRun(r))
    out.push(f)
  }
  return out
}

export interface ExtraSshd {
  readonly port: number
  /** What sshd wrote to stderr (-e) so far. */
  readonly log: string
  stop(): Promise<void>
}

/**
 * One more sshd in the bastion namespace: the variant config `base` (e.g. env.dir/auth/
 * sshd_config.rsa512) with its Port and PidFile replaced, `lines` put first (sshd keeps the
 * first value of an option), listening on `port`; its log is kept in memory.
 */
export async function extraSshd(tb: Testbed, dir: string, base: string, port: number, lines: readonly string[]): Promise<ExtraSshd> {
  const conf = path.join(dir, `sshd_config.${port}`)
  const body = readFileSync(base, 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(Port|PidFile)\s/i.test(l))
  writeFileSync(conf, [...lines, `Port ${port}`, `PidFile ${path.join(dir, `sshd-${port}.pid`)}`, ...body].join('\n'), { mode: 0o600 })
  const check = await run(['/usr/sbin/sshd', '-t', '-f', conf])
  if (check.code !== 0) throw new Error(`sshd -t ${conf}: ${describeRun(check)}`)
  const child = spawn(tb.nsArgv('bastion', [])[0]!, [...tb.nsArgv('bastion', []).slice(1), '/usr/sbin/sshd', '-D', '-e', '-f', conf], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const pid = child.pid!
  for (let i = 0; ; i++) {
    const ss = await tb.exec('bastion', ['ss', '-Hltn', `sport = :${port}`])
    if (ss.stdout.includes(`:${port}`)) break
    if (i > 100 || child.exitCode !== null) throw new Error(`extra sshd on ${port} did not start: ${err}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    port,
    get log() {
      return err
    },
    async stop() {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // gone already
      }
      await waitGone([pid])
    },
  } as ExtraSshd
}

/** Removes a temp dir made by tempDir. */
export const removeDir = (d: string): void => rmSync(d, { recursive: true, force: true })

function isSocket(p: string): boolean {
  try {
    return statSync(p).isSocket()
  } catch {
    return false
  }
}
