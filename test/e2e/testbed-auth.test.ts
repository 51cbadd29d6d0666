// The testbed's authentication variants (`scripts/testbed up NAME --auth-variants`), with plain
// OpenSSH only: each sshd set-up — user certificates (IdentityFile, CertificateFile, agent), a host
// certificate with only @cert-authority in known_hosts, rsa-sha2-512 only, a post-quantum-only KEX,
// key + keyboard-interactive through PAM — lets `ssh` in, and refuses what it must refuse. This is
// the baseline for the engine tests of issues 13 and 14: when one of those fails, the testbed is
// known to be right. Also: the variants are opt-in, and `down` (or a failed up) leaves no user,
// process, namespace or state behind.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { waitGone } from './lib/cli'
import { describeRun, run, TESTBED_SCRIPT, type RunResult } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { PtyProcess } from './lib/pty'
import { newTestbedName, Testbed } from './lib/testbed'
import {
  AUTH_ALIASES as A, authEnvOf, kbdPassword, logLines, makeAskpass, sshArgv, startAgent, type Askpass, type AuthEnv, type TestAgent,
} from './lib/testbed-auth'

const userExists = async (user: string): Promise<boolean> => (await run(['getent', 'passwd', user])).code === 0
const namespacesOf = async (name: string): Promise<string[]> =>
  (await run(['ip', 'netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`st-${name}-`))
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

e2eDescribe('testbed --auth-variants: plain OpenSSH gets in where each set-up allows, and only there', () => {
  let tb: Testbed | undefined
  let env: AuthEnv
  const agents: TestAgent[] = []
  const askpasses: Askpass[] = []
  const others: string[] = []

  beforeAll(async () => {
    assertRoot()
    tb = await Testbed.up(newTestbedName('tau'), { authVariants: true })
    env = authEnvOf(tb)
  })
  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined)
    for (const a of askpasses) a.remove()
    for (const name of others) await run([TESTBED_SCRIPT, 'down', name], { timeoutMs: 30_000 })
    await tb?.down()
  })

  const bed = (): Testbed => tb!
  const ssh = (alias: string, opts: Parameters<typeof sshArgv>[2] & { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> =>
    run(sshArgv(bed(), alias, opts), { env: { ...process.env, ...opts.env }, timeoutMs: 20_000 })
  const askpass = (answer: string): Askpass => {
    const a = makeAskpass(answer)
    askpasses.push(a)
    return a
  }
  /** Logins an sshd log shows for a certificate ID. */
  const certLogins = (log: string, id: string): string[] =>
    logLines(log, new RegExp(`Accepted publickey for root .* ED25519-CERT SHA256:\\S+ ID ${esc(id)} \\(serial \\d+\\) CA ED25519`))

  it('is opt-in: a testbed without it has no extra sshd, no user, no alias, ST_AUTH_VARIANTS=0', async () => {
    const name = newTestbedName('tap')
    others.push(name)
    const plain = await Testbed.up(name)
    try {
      expect(plain.env.authVariants).toBe(0)
      expect(plain.env.usercertPort).toBeUndefined()
      expect(() => authEnvOf(plain)).toThrow(/no auth variants/)
      expect(readFileSync(plain.env.sshConfig, 'utf8')).not.toMatch(/bastion-cert|bastion-kbd/)
      expect(await userExists(`stkbd-${name}`)).toBe(false)
      const listening = await plain.exec('bastion', ['ss', '-Hltn'])
      expect(listening.stdout).not.toMatch(/:220[1-6]\b/)
      expect(readFileSync(`${plain.env.dir}/pids`, 'utf8')).not.toMatch(/^sshd-/m)
    } finally {
      await plain.down()
    }
  })

  it('user certificate, IdentityFile with its -cert.pub beside it: in; a plain authorized key is refused there', async () => {
    expect(existsSync(`${env.usercertKey}-cert.pub`)).toBe(true)
    const r = await ssh(A.cert)
    expect(r.code, describeRun(r)).toBe(0)
    expect(certLogins(env.usercertLog, `testbed-${env.name}-usercert`)).toHaveLength(1)
    // The main alias's key is in the main sshd's authorized_keys, not here: certificates only.
    const plain = await ssh('bastion', { extra: ['-p', String(env.usercertPort)] })
    expect(plain.code, describeRun(plain)).toBe(255)
    expect(plain.stderr).toMatch(/Permission denied \(publickey\)/)
  })

  it('user certificate named by CertificateFile, kept elsewhere: in; the same key without it is refused', async () => {
    expect(existsSync(`${env.usercertFileKey}-cert.pub`)).toBe(false)
    const r = await ssh(A.certFile)
    expect(r.code, describeRun(r)).toBe(0)
    expect(certLogins(env.usercertLog, `testbed-${env.name}-usercert-file`)).toHaveLength(1)
    const bare = await run(bed().nsArgv('client', [
      'ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', env.usercertFileKey,
      '-o', `UserKnownHostsFile=${env.knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
      '-p', String(env.usercertPort), `root@${env.bastionIp}`, 'true',
    ]))
    expect(bare.code, describeRun(bare)).toBe(255)
    expect(bare.stderr).toMatch(/Permission denied \(publickey\)/)
  })

  it('user certificate from an agent holding only the certificate identity: in; without the agent: refused', async () => {
    const both = await startAgent(bed())
    agents.push(both)
    const listBoth = await run(['ssh-add', '-l'], { env: { ...process.env, ...both.env } })
    expect(listBoth.stdout).toMatch(/\(ED25519\)\n.*\(ED25519-CERT\)/)
    await both.stop()
    expect(existsSync(both.sock)).toBe(false) // ssh-agent removes its socket on SIGTERM

    const agent = await startAgent(bed(), { certOnly: true })
    agents.push(agent)
    const list = await run(['ssh-add', '-l'], { env: { ...process.env, ...agent.env } })
    expect(list.stdout.trim().split('\n'), describeRun(list)).toEqual([expect.stringMatching(/\(ED25519-CERT\)$/)])
    const r = await ssh(A.certAgent, { env: agent.env })
    expect(r.code, describeRun(r)).toBe(0)
    expect(certLogins(env.usercertLog, `testbed-${env.name}-agentcert`)).toHaveLength(1)
    const noAgent = { ...process.env }
    delete noAgent.SSH_AUTH_SOCK
    const without = await run(sshArgv(bed(), A.certAgent), { env: noAgent })
    expect(without.code, describeRun(without)).toBe(255)
    await agent.stop()
    expect(await waitGone([agent.pid], 100)).toEqual([])
  })

  it('host certificate: a known_hosts with nothing but @cert-authority lets ssh in, and stays unchanged', async () => {
    const before = readFileSync(env.knownHostsCa, 'utf8')
    const lines = before.split('\n').filter(Boolean)
    expect(lines.length).toBeGreaterThan(0)
    for (const l of lines) expect(l).toMatch(new RegExp(`^@cert-authority \\S+ ${esc(readFileSync(env.hostCa, 'utf8').split(' ').slice(0, 2).join(' '))}$`))
    const r = await ssh(A.hostcert, { extra: ['-v'] })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`Host '\\[${esc(env.bastionIp)}\\]:${env.hostcertPort}' is known and matches the ED25519-CERT host certificate`))
    expect(logLines(env.hostcertLog, /Accepted publickey for root/)).toHaveLength(1)
    expect(readFileSync(env.knownHostsCa, 'utf8')).toBe(before)
  })

  it('host certificate from another CA, and a plain host key, are refused with that known_hosts', async () => {
    const bad = await ssh(A.hostcertBadca, { extra: ['-v'] })
    expect(bad.code, describeRun(bad)).toBe(255)
    expect(bad.stderr).toMatch(/Server host certificate: .* ID "testbed-\w+-hostcert-badca"/)
    expect(bad.stderr).toMatch(/No matching CA found/)
    expect(bad.stderr).toMatch(/Host key verification failed/)
    expect(logLines(env.hostcertBadcaLog, /Accepted/)).toEqual([])
    const plain = await ssh(A.hostcertPlain)
    expect(plain.code, describeRun(plain)).toBe(255)
    expect(plain.stderr).toMatch(/Host key verification failed/)
  })

  it('rsa-sha2-512 only: the RSA key gets in; offered as rsa-sha2-256 or ssh-rsa it is refused', async () => {
    const r = await ssh(A.rsa512)
    expect(r.code, describeRun(r)).toBe(0)
    expect(logLines(env.rsa512Log, /Accepted publickey for root .* RSA SHA256:/)).toHaveLength(1)
    for (const alg of ['rsa-sha2-256', 'ssh-rsa']) {
      const refused = await ssh(A.rsa512, { extra: ['-o', `PubkeyAcceptedAlgorithms=${alg}`] })
      expect(refused.code, `${alg}: ${describeRun(refused)}`).toBe(255)
      expect(refused.stderr).toMatch(/Permission denied \(publickey\)/)
    }
    expect(logLines(env.rsa512Log, /Accepted publickey/)).toHaveLength(1)
  })

  it('post-quantum-only KEX: ssh negotiates it; a client without it cannot', async () => {
    expect(env.pqKex).toMatch(/^(mlkem768x25519-sha256|sntrup761x25519-sha512@openssh\.com)$/)
    const r = await ssh(A.pq, { extra: ['-v'] })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toContain(`kex: algorithm: ${env.pqKex}`)
    const classic = await ssh(A.pq, { extra: ['-o', 'KexAlgorithms=curve25519-sha256,ecdh-sha2-nistp256,diffie-hellman-group14-sha256'] })
    expect(classic.code, describeRun(classic)).toBe(255)
    expect(classic.stderr).toMatch(new RegExp(`no matching key exchange method found\\. Their offer: ${esc(env.pqKex)}`))
  })

  it('keyboard-interactive after the key, answered by SSH_ASKPASS: one prompt, both methods in the log', async () => {
    const a = askpass(kbdPassword(env))
    const r = await ssh(A.kbd, { batch: false, env: a.env, cmd: ['id', '-un'] })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stdout.trim()).toBe(env.kbdUser)
    expect(a.prompts()).toEqual([`(${env.kbdUser}@${env.bastionIp}) Password: `])
    expect(logLines(env.kbdLog, new RegExp(`Partial publickey for ${esc(env.kbdUser)} `))).toHaveLength(1)
    expect(logLines(env.kbdLog, new RegExp(`Accepted keyboard-interactive/pam for ${esc(env.kbdUser)} `))).toHaveLength(1)
  })

  it('keyboard-interactive: a wrong password is refused; without the authorized key there is no prompt at all', async () => {
    const wrong = askpass('not-the-password')
    const r = await ssh(A.kbd, { batch: false, env: wrong.env, extra: ['-o', 'NumberOfPasswordPrompts=1'] })
    expect(r.code, describeRun(r)).toBe(255)
    expect(wrong.prompts()).toHaveLength(1)
    const right = askpass(kbdPassword(env))
    const nokey = await run(bed().nsArgv('client', [
      'ssh', '-F', '/dev/null', '-o', 'IdentitiesOnly=yes', '-i', env.sshKeyUnauthorized, '-o', `UserKnownHostsFile=${env.knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-p', String(env.kbdPort), '-l', env.kbdUser, env.bastionIp, 'true',
    ]), { env: { ...process.env, ...right.env } })
    expect(nokey.code, describeRun(nokey)).toBe(255)
    expect(right.prompts()).toEqual([])
    expect(logLines(env.kbdLog, /Accepted keyboard-interactive/)).toHaveLength(1)
  })

  it('keyboard-interactive on a terminal: the prompt shows on the pty, the typed password gets in', async () => {
    const pw = kbdPassword(env)
    const pty = PtyProcess.start(['ssh', '-F', env.sshConfig, A.kbd, 'echo', 'pty-login-ok'], { prefix: bed().nsArgv('client', []) })
    try {
      await pty.waitFor(new RegExp(`\\(${esc(env.kbdUser)}@${esc(env.bastionIp)}\\) Password: `))
      pty.write(`${pw}\r`)
      await pty.waitFor(/pty-login-ok/)
      expect(await pty.exit(), pty.output).toBe(0)
      expect(pty.count(/Password:/)).toBe(1)
      expect(pty.output).not.toContain(pw) // echo was off
    } finally {
      await pty.kill()
    }
    expect(logLines(env.kbdLog, /Accepted keyboard-interactive/)).toHaveLength(2)
  })

  it('an up interrupted after the user was made leaves nothing: no user, namespace, process or state', async () => {
    const name = newTestbedName('tai')
    others.push(name)
    const user = `stkbd-${name}`
    const up = spawn(TESTBED_SCRIPT, ['up', name, '--auth-variants'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TESTBED_QUIET: '1' } })
    let err = ''
    up.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((r) => up.on('close', (code) => r(code)))
    const deadline = Date.now() + 30_000
    // /etc/passwd directly: cheaper than a getent process every few milliseconds.
    while (!new RegExp(`^${user}:`, 'm').test(readFileSync('/etc/passwd', 'utf8'))) {
      if (up.exitCode !== null || Date.now() > deadline) throw new Error(`the user never appeared: ${err}`)
      await new Promise((r) => setTimeout(r, 10))
    }
    up.kill('SIGTERM')
    expect(await exited, err).toBe(130)
    expect(err).toMatch(/up \w+ failed, tearing down/)
    expect(await userExists(user)).toBe(false)
    expect(await namespacesOf(name)).toEqual([])
    expect(existsSync(`${env.dir}/../${name}`)).toBe(false)
  })

  it('down leaves nothing: no user, no sshd or agent, no namespace, no state', async () => {
    await startAgent(bed(), { certOnly: true }) // left for down to end
    const pids = readFileSync(`${env.dir}/pids`, 'utf8').trim().split('\n').map((l) => Number(l.split(' ')[1]))
    expect(pids.length).toBeGreaterThanOrEqual(8) // main sshd, 6 variants, agent, services
    expect(await userExists(env.kbdUser)).toBe(true)
    await bed().down()
    tb = undefined
    expect(await waitGone(pids)).toEqual([])
    expect(await userExists(env.kbdUser)).toBe(false)
    expect((await run(['getent', 'group', env.kbdUser])).code).not.toBe(0)
    expect(await namespacesOf(env.name)).toEqual([])
    expect(existsSync(env.dir)).toBe(false)
  })
})
