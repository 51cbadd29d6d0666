/**
 * The testbed's authentication variants (Testbed.up(name, { authVariants: true }), i.e.
 * `scripts/testbed up NAME --auth-variants`; ports, aliases and files: the header of
 * scripts/testbed) seen from a test: the typed env, an ssh-agent holding a certificate identity,
 * SSH_ASKPASS answering a prompt, and plain OpenSSH argv for an alias.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { waitGone } from './cli'
import { describeRun, run, TESTBED_SCRIPT } from './exec'
import { shellQuote } from './pty'
import type { Testbed, TestbedEnv } from './testbed'

/** The ssh_config aliases that --auth-variants adds to env.sshConfig. */
export const AUTH_ALIASES = {
  /** user certificate: IdentityFile, its -cert.pub beside it */
  cert: 'bastion-cert',
  /** user certificate: CertificateFile, kept elsewhere */
  certFile: 'bastion-cert-file',
  /** user certificate from the agent in $SSH_AUTH_SOCK only (startAgent) */
  certAgent: 'bastion-cert-agent',
  /** host certificate; known_hosts holds only @cert-authority */
  hostcert: 'bastion-hostcert',
  /** host certificate from another CA: must be refused */
  hostcertBadca: 'bastion-hostcert-badca',
  /** the main sshd's plain host key, same CA-only known_hosts: must be refused */
  hostcertPlain: 'bastion-hostcert-plain',
  /** RSA user key, server accepts rsa-sha2-512 only */
  rsa512: 'bastion-rsa512',
  /** post-quantum KEX only */
  pq: 'bastion-pq',
  /** key, then keyboard-interactive (PAM "Password:") as the throwaway user */
  kbd: 'bastion-kbd',
} as const

type AuthKeys =
  | 'userCa' | 'hostCa' | 'usercertPort' | 'usercertLog' | 'usercertKey' | 'usercertCert' | 'usercertFileKey'
  | 'usercertFileCert' | 'agentKey' | 'agentCert' | 'hostcertPort' | 'hostcertLog' | 'hostcertBadcaPort'
  | 'hostcertBadcaLog' | 'knownHostsCa' | 'rsa512Port' | 'rsa512Log' | 'sshKeyRsa' | 'pqPort' | 'pqLog' | 'pqKex'
  | 'kbdPort' | 'kbdLog' | 'kbdUser' | 'kbdPasswordFile' | 'kbdAskpass'

/** TestbedEnv with every auth-variant field present. */
export type AuthEnv = TestbedEnv & Required<Pick<TestbedEnv, AuthKeys>>

const AUTH_KEYS: readonly AuthKeys[] = [
  'userCa', 'hostCa', 'usercertPort', 'usercertLog', 'usercertKey', 'usercertCert', 'usercertFileKey',
  'usercertFileCert', 'agentKey', 'agentCert', 'hostcertPort', 'hostcertLog', 'hostcertBadcaPort',
  'hostcertBadcaLog', 'knownHostsCa', 'rsa512Port', 'rsa512Log', 'sshKeyRsa', 'pqPort', 'pqLog', 'pqKex',
  'kbdPort', 'kbdLog', 'kbdUser', 'kbdPasswordFile', 'kbdAskpass',
]

/** The env of a testbed built with authVariants, typed; throws if it was built without. */
export function authEnvOf(tb: Testbed): AuthEnv {
  const missing = AUTH_KEYS.filter((k) => tb.env[k] === undefined)
  if (tb.env.authVariants !== 1 || missing.length > 0) {
    throw new Error(`testbed ${tb.name} has no auth variants (up with { authVariants: true }); missing: ${missing.join(', ')}`)
  }
  return tb.env as AuthEnv
}

/** The throwaway user's password (root reads the root-only file). */
export const kbdPassword = (env: AuthEnv): string => readFileSync(env.kbdPasswordFile, 'utf8').trim()

/**
 * argv (client namespace) for plain OpenSSH: `ssh -F env.sshConfig [extra…] ALIAS CMD…`, with
 * BatchMode unless the caller answers prompts (askpass or a pty): then pass batch: false.
 */
export function sshArgv(tb: Testbed, alias: string, opts: { extra?: readonly string[]; cmd?: readonly string[]; batch?: boolean } = {}): string[] {
  const batch = opts.batch === false ? [] : ['-o', 'BatchMode=yes']
  return tb.nsArgv('client', ['ssh', '-F', tb.env.sshConfig, ...batch, '-o', 'ConnectTimeout=10', ...(opts.extra ?? []), alias, ...(opts.cmd ?? ['true'])])
}

/** Lines of an sshd log that match re (count logins: /Accepted publickey for root/). */
export function logLines(file: string, re: RegExp): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => re.test(l))
}

export interface TestAgent {
  readonly sock: string
  readonly pid: number
  /** { SSH_AUTH_SOCK } to merge into a child's environment. */
  readonly env: { SSH_AUTH_SOCK: string }
  /** Ends the agent (SIGTERM by pid) and waits until it is gone; safe to call twice. */
  stop(): Promise<void>
}

/**
 * `scripts/testbed agent NAME`: an ssh-agent (client namespace; `down` ends it too) holding
 * env.agentKey and its certificate — with certOnly, the certificate identity alone.
 */
export async function startAgent(tb: Testbed, opts: { certOnly?: boolean } = {}): Promise<TestAgent> {
  const r = await run([TESTBED_SCRIPT, 'agent', tb.name, ...(opts.certOnly ? ['--cert-only'] : [])], { timeoutMs: 20_000 })
  const vars = new Map([...r.stdout.matchAll(/^(SSH_AUTH_SOCK|SSH_AGENT_PID)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]))
  const sock = vars.get('SSH_AUTH_SOCK')
  const pid = Number(vars.get('SSH_AGENT_PID'))
  if (r.code !== 0 || !sock || !Number.isInteger(pid) || pid <= 0) throw new Error(`scripts/testbed agent ${tb.name} failed: ${describeRun(r)}`)
  let stopped = false
  return {
    sock,
    pid,
    env: { SSH_AUTH_SOCK: sock },
    async stop() {
      if (stopped) return
      stopped = true
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // gone already
      }
      const left = await waitGone([pid])
      if (left.length > 0) throw new Error(`ssh-agent ${pid} did not exit`)
    },
  }
}

export interface Askpass {
  /** SSH_ASKPASS (this script), SSH_ASKPASS_REQUIRE=force: merge into ssh's environment. */
  readonly env: { SSH_ASKPASS: string; SSH_ASKPASS_REQUIRE: 'force' }
  /** The prompts ssh asked so far, in order (e.g. "(user@10.250.0.1) Password: "). */
  prompts(): string[]
  /** Deletes the script and its files. */
  remove(): void
}

/**
 * An SSH_ASKPASS program that answers every prompt with `answer` and records the prompt (its
 * argument), so tests can count how often ssh asked. Files in a fresh 0700 directory.
 */
export function makeAskpass(answer: string): Askpass {
  const dir = mkdtempSync(path.join(tmpdir(), 'st-e2e-askpass-'))
  const answerFile = path.join(dir, 'answer')
  const log = path.join(dir, 'prompts')
  const script = path.join(dir, 'askpass')
  writeFileSync(answerFile, `${answer}\n`, { mode: 0o600 })
  writeFileSync(log, '', { mode: 0o600 })
  // NUL-separated: a prompt may span lines.
  writeFileSync(script, `#!/bin/sh\nprintf '%s\\0' "$1" >>${shellQuote(log)}\nexec cat ${shellQuote(answerFile)}\n`, { mode: 0o700 })
  chmodSync(script, 0o700)
  return {
    env: { SSH_ASKPASS: script, SSH_ASKPASS_REQUIRE: 'force' },
    prompts: () => readFileSync(log, 'utf8').split('\0').slice(0, -1),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}
