// The OpenSSH engine against the bastions ssh2 cannot reach (issue 13), each a real sshd of the
// testbed's --auth-variants: user certificates (IdentityFile, CertificateFile, an agent holding
// only the certificate), a host certificate with nothing but @cert-authority in known_hosts,
// rsa-sha2-512 only, a post-quantum-only KEX, key + keyboard-interactive on a terminal (asked
// once), a live ControlMaster of the user's reused (asked zero times, one login in sshd's log,
// left running), and the engine's own master killed (a new one, traffic back). Every run must
// leave no master, no socket directory and no rule behind.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect, it } from 'vitest'
import { cliEnv, cmdlineOf, descendantsOf, runCli, Tunnel, waitGone } from './lib/cli'
import { CLI_BIN, describeRun, run } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import { PtyProcess } from './lib/pty'
import { useTestbed } from './lib/setup'
import { AUTH_ALIASES as A, authEnvOf, kbdPassword, logLines, makeAskpass, startAgent, type AuthEnv, type TestAgent } from './lib/testbed-auth'
import type { Testbed } from './lib/testbed'
import { curl, firstSuccess } from './lib/traffic'

const HELLO = 'hello from the private network'
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** ssh processes below pid (the engine's masters and keepers' children). */
const sshChildren = (pid: number): number[] => descendantsOf(pid).filter((p) => /^(\S*\/)?ssh /.test(cmdlineOf(p)))

/** The engine's private socket directories (mkdtemp subnet-tunnel-XXXXXX) left in dir. */
const socketDirs = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('subnet-tunnel-'))

e2eDescribe('openssh engine: certificates, host CAs, rsa-sha2-512, PQ KEX, 2FA once, ControlMaster reuse (real sshd set-ups)', () => {
  let tb: Testbed
  let env: AuthEnv
  let tmp: string
  const agents: TestAgent[] = []
  useTestbed('toa', (t) => {
    tb = t
    env = authEnvOf(t)
  }, {
    authVariants: true,
    setUp: () => {
      tmp = mkdtempSync(path.join(tmpdir(), 'st-e2e-osa-'))
    },
    tearDown: async () => {
      for (const a of agents) await a.stop().catch(() => undefined)
      if (tmp) rmSync(tmp, { recursive: true, force: true })
    },
  })

  /**
   * A fresh TMPDIR/XDG_RUNTIME_DIR per run: where the engine makes its private socket
   * directory, so the test can see that it is gone afterwards.
   */
  const runDir = (): string => mkdtempSync(path.join(tmp, 'run-'))
  const engineArgs = (alias: string): string[] => ['--ssh-engine', 'openssh', '-F', tb.env.sshConfig, '-r', alias, tb.env.privateNet]

  /** Brings the tunnel up through alias, checks traffic and the up line, stops it, checks nothing is left. */
  async function tunnelThrough(alias: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<void> {
    const dir = runDir()
    const t = await Tunnel.start(tb, engineArgs(alias), { env: { TMPDIR: dir, XDG_RUNTIME_DIR: dir, ...extraEnv } })
    let masters: number[] = []
    try {
      expect(t.upLine).toMatch(/\(openssh, master pid \d+\)/)
      masters = sshChildren(t.pid)
      expect(masters.length, t.stderr).toBeGreaterThanOrEqual(1)
      const r = await curl(tb, tb.url(tb.env.privateIp))
      expect(r.stdout, describeRun(r) + t.stderr).toContain(HELLO)
    } finally {
      expect((await t.stop()).code, t.stderr).toBe(0)
    }
    expect(await waitGone(masters), 'no master left').toEqual([])
    expect(socketDirs(dir), 'the private socket directory is removed').toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
  }

  /** Runs the CLI to a refusal; checks the code, that nothing was applied and nothing is left. */
  async function refused(alias: string, code: RegExp): Promise<string> {
    const dir = runDir()
    const r = await runCli(tb, engineArgs(alias), { env: { TMPDIR: dir, XDG_RUNTIME_DIR: dir } })
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.stderr).toMatch(code)
    // One line with a hint, not ssh's banner.
    expect(r.stderr).not.toMatch(/@@@@@/)
    expect(socketDirs(dir)).toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
    return r.stderr
  }

  it('user certificates from IdentityFile, CertificateFile and an agent holding only the certificate: up, traffic, the certificate in sshd’s log', async () => {
    const certLogins = (): number => logLines(env.usercertLog, /Accepted publickey for root .* ED25519-CERT /).length
    const before = certLogins()
    await tunnelThrough(A.cert)
    await tunnelThrough(A.certFile)
    const agent = await startAgent(tb, { certOnly: true })
    agents.push(agent)
    await tunnelThrough(A.certAgent, agent.env)
    expect(certLogins() - before).toBe(3)
  })

  it('host certificate with only @cert-authority in known_hosts: up, known_hosts unchanged; another CA or a plain key: HOSTKEY refusal, nothing left', async () => {
    const kh = readFileSync(env.knownHostsCa, 'utf8')
    await tunnelThrough(A.hostcert)
    expect(readFileSync(env.knownHostsCa, 'utf8')).toBe(kh)
    const bad = await refused(A.hostcertBadca, /HOSTKEY_/)
    expect(bad).toMatch(/hint/i)
    await refused(A.hostcertPlain, /HOSTKEY_/)
    expect(readFileSync(env.knownHostsCa, 'utf8'), 'nothing pinned').toBe(kh)
  })

  it('rsa-sha2-512-only server and a post-quantum-only KEX: up and carrying traffic', async () => {
    await tunnelThrough(A.rsa512)
    expect(logLines(env.rsa512Log, /Accepted publickey for root .* RSA /).length).toBeGreaterThanOrEqual(1)
    await tunnelThrough(A.pq)
  })

  /** The CLI on a pty (prompts allowed), `exec -- curl` through the tunnel; returns what the terminal showed. */
  async function execOnPty(args: readonly string[], extraEnv: NodeJS.ProcessEnv, answer?: string): Promise<string> {
    const e = cliEnv({ TERM: 'dumb', ...extraEnv })
    delete e.SUBNET_TUNNEL_NO_TTY
    const pty = PtyProcess.start([process.execPath, CLI_BIN, ...args, 'exec', '--', 'curl', '-sS', '--max-time', '15', tb.url(tb.env.privateIp)], {
      prefix: tb.nsArgv('client', []),
      env: e,
    })
    try {
      if (answer !== undefined) {
        await pty.waitFor(/Password: /, 30_000)
        pty.write(`${answer}\r`)
      }
      expect(await pty.exit(60_000), pty.output).toBe(0)
      return pty.output
    } finally {
      await pty.kill()
    }
  }

  const kbdLogins = (): number => logLines(env.kbdLog, new RegExp(`Accepted keyboard-interactive/pam for ${esc(env.kbdUser)} `)).length
  const passwordPrompts = (out: string): number => [...out.matchAll(/Password: /g)].length

  it('key + keyboard-interactive on a terminal: asked once, one login, traffic', async () => {
    const dir = runDir()
    const before = kbdLogins()
    const out = await execOnPty(engineArgs(A.kbd), { TMPDIR: dir, XDG_RUNTIME_DIR: dir }, kbdPassword(env))
    expect(out).toContain(HELLO)
    expect(passwordPrompts(out), out).toBe(1)
    expect(kbdLogins() - before).toBe(1)
    expect(socketDirs(dir)).toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('a live ControlMaster of the user’s is reused: asked zero times, no second login, and it keeps running', async () => {
    const cm = path.join(tmp, 'cm')
    const cfg = path.join(tmp, 'ssh_config.cm')
    // The user's config: ControlPath for the 2FA bastion, everything else from the testbed's.
    writeFileSync(cfg, `Host ${A.kbd}\n  ControlPath ${cm}\n\nInclude ${tb.env.sshConfig}\n`)
    const askpass = makeAskpass(kbdPassword(env))
    const before = kbdLogins()
    let masterPid = 0
    try {
      const m = await run(
        tb.nsArgv('client', ['ssh', '-F', cfg, '-o', 'ControlMaster=yes', '-o', 'ControlPersist=yes', '-fN', A.kbd]),
        { env: { ...process.env, ...askpass.env }, timeoutMs: 30_000 },
      )
      expect(m.code, describeRun(m)).toBe(0)
      expect(askpass.prompts()).toHaveLength(1)
      const check = spawnSync('ip', ['netns', 'exec', tb.env.clientNs, 'ssh', '-F', cfg, '-O', 'check', A.kbd], { encoding: 'utf8' })
      masterPid = Number(/pid=(\d+)/.exec(check.stderr)?.[1])
      expect(masterPid, check.stderr).toBeGreaterThan(0)

      const dir = runDir()
      const out = await execOnPty(['--ssh-engine', 'openssh', '-F', cfg, '-r', A.kbd, tb.env.privateNet, '-v'], { TMPDIR: dir, XDG_RUNTIME_DIR: dir })
      expect(out).toContain(HELLO)
      expect(out).toMatch(new RegExp(`your ControlMaster pid ${masterPid}`))
      expect(passwordPrompts(out), out).toBe(0)
      expect(askpass.prompts(), 'the user’s master was not asked again either').toHaveLength(1)
      expect(kbdLogins() - before, 'one login: the user’s master').toBe(1)
      // Not stopped by us: still answers.
      const still = spawnSync('ip', ['netns', 'exec', tb.env.clientNs, 'ssh', '-F', cfg, '-O', 'check', A.kbd], { encoding: 'utf8' })
      expect(still.status, still.stderr).toBe(0)
      expect(socketDirs(dir)).toEqual([])
    } finally {
      spawnSync('ip', ['netns', 'exec', tb.env.clientNs, 'ssh', '-F', cfg, '-O', 'exit', A.kbd])
      if (masterPid > 0) expect(await waitGone([masterPid], 10_000)).toEqual([])
      askpass.remove()
    }
    expect(existsSync(cm)).toBe(false)
  })

  it('the engine’s master killed: a new one comes up, traffic is back, the new one is ended on stop', async () => {
    const dir = runDir()
    const t = await Tunnel.start(tb, engineArgs('bastion'), { env: { TMPDIR: dir, XDG_RUNTIME_DIR: dir } })
    let all: number[] = []
    try {
      const first = sshChildren(t.pid)
      expect(first.length, t.stderr).toBe(1)
      const killedAt = Date.now()
      process.kill(first[0]!, 'SIGKILL')
      expect(await waitGone(first)).toEqual([])
      const ms = (await firstSuccess(tb, tb.url(tb.env.privateIp), 20_000)) - killedAt
      console.log(`[measure] openssh master SIGKILLed → first successful request after ${ms} ms`)
      const second = sshChildren(t.pid)
      expect(second.length, t.stderr).toBe(1)
      expect(second[0]).not.toBe(first[0])
      expect(t.stderr).toMatch(/connection lost/)
      all = second
    } finally {
      expect((await t.stop()).code, t.stderr).toBe(0)
    }
    expect(await waitGone(all)).toEqual([])
    expect(socketDirs(dir)).toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
  })
})
