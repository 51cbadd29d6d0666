/**
 * A real OpenSSH sshd on 127.0.0.1 for unit tests that need the genuine server (channel
 * failures, remote forwards, file limits). Needs root (sshd's privilege separation) and
 * /usr/sbin/sshd; tests skip with `describe.skipIf(!canRunSshd)`. Stop what you start.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Logger } from '../../src/observe/logger'
import { silentLogger } from '../../src/observe/logger'
import { SshSession } from '../../src/ssh/builtin/session'
import { freePort, hostCfg, once, scriptedPrompter, tmpDir } from './helpers'

export const SSHD = '/usr/sbin/sshd'
export const canRunSshd = fs.existsSync(SSHD) && process.getuid?.() === 0

/** A temp dir with a host key, a user key and its authorized_keys. */
export interface SshdKeys {
  readonly dir: string
  readonly keyFile: string
  readonly hostBlob: Buffer
}

export function makeSshdKeys(): SshdKeys {
  const dir = tmpDir()
  fs.mkdirSync('/run/sshd', { recursive: true }) // the privilege separation directory sshd insists on
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id_ed25519')])
  const keyFile = path.join(dir, 'id_ed25519')
  fs.copyFileSync(`${keyFile}.pub`, path.join(dir, 'authorized_keys'))
  const hostBlob = Buffer.from(fs.readFileSync(path.join(dir, 'host_key.pub'), 'utf8').trim().split(/\s+/)[1]!, 'base64')
  return { dir, keyFile, hostBlob }
}

export interface RealSshd {
  readonly port: number
  readonly proc: ChildProcess
  /** Everything sshd wrote on stderr so far. */
  log(): string
  /** Per-connection sshd processes (children of the listener): killing one drops that client. */
  children(): number[]
  stop(): Promise<void>
}

/** Starts sshd with extra sshd_config lines, optionally under `prlimit --nofile=N:N`. */
export async function startRealSshd(
  keys: SshdKeys,
  opts: { name?: string; extra?: readonly string[]; nofile?: number } = {},
): Promise<RealSshd> {
  const name = opts.name ?? 'sshd'
  const port = await freePort()
  const cfg = path.join(keys.dir, `${name}_config`)
  const conf = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${path.join(keys.dir, 'host_key')}`,
    `AuthorizedKeysFile ${path.join(keys.dir, 'authorized_keys')}`,
    `PidFile ${path.join(keys.dir, `${name}.pid`)}`,
    'StrictModes no',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'LogLevel VERBOSE',
    ...(opts.extra ?? []),
  ]
  // Later lines do not override earlier ones in sshd_config: callers' extras win only for
  // keys not listed above (AllowTcpForwarding, GatewayPorts, …).
  fs.writeFileSync(cfg, conf.join('\n') + '\n')
  const argv = [SSHD, '-D', '-e', '-f', cfg]
  const proc = opts.nofile
    ? spawn('prlimit', [`--nofile=${opts.nofile}:${opts.nofile}`, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()))
  // sshd logs "Server listening on …" once the socket is bound.
  for (let i = 0; i < 100 && !/Server listening/.test(log); i++) await new Promise((r) => setTimeout(r, 50))
  if (!/Server listening/.test(log)) {
    proc.kill('SIGTERM')
    throw new Error(`sshd did not start: ${log}`)
  }
  return {
    port,
    proc,
    log: () => log,
    children: () => {
      try {
        return execFileSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean).map(Number)
      } catch {
        return []
      }
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = once(proc, 'exit', 5000).catch(() => {})
      proc.kill('SIGTERM')
      await exited
    },
  }
}

/** A session to a RealSshd as the current user, trusting exactly its host key. */
export function sessionTo(
  port: number,
  keys: SshdKeys,
  opts: { minDelayMs?: number; maxDelayMs?: number; forwardRetryMs?: number; log?: Logger; identityFiles?: string[]; identityAgent?: string; ciphers?: string[] } = {},
): SshSession {
  return new SshSession({
    target: hostCfg({
      port,
      user: os.userInfo().username,
      identityFiles: opts.identityFiles ?? [keys.keyFile],
      ...(opts.identityAgent ? { identityAgent: opts.identityAgent } : {}),
      ...(opts.ciphers ? { ciphers: opts.ciphers } : {}),
    }),
    makeVerifier: () => ({
      preferredAlgorithms: () => ['ssh-ed25519'],
      verify: async (k) => {
        if (!k.equals(keys.hostBlob)) throw new Error('unexpected host key')
      },
    }),
    prompter: scriptedPrompter(null),
    log: opts.log ?? silentLogger,
    ...(opts.minDelayMs !== undefined ? { minDelayMs: opts.minDelayMs } : {}),
    ...(opts.maxDelayMs !== undefined ? { maxDelayMs: opts.maxDelayMs } : {}),
    ...(opts.forwardRetryMs !== undefined ? { forwardRetryMs: opts.forwardRetryMs } : {}),
  })
}
