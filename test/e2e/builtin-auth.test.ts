// The built-in engine (ssh2) behaving like OpenSSH against real sshd set-ups (issue 14, items
// 1, 3, 4, 6 and 8): an RSA key on an rsa-sha2-512-only server (from a file and from the agent),
// user certificates (beside the key, CertificateFile, in the agent), agent keys in OpenSSH's order (an IdentityFile that is only a .pub, IdentitiesOnly with an
// agent, unrelated agent keys that would burn MaxAuthTries), ProxyJump chains written
// recursively in ssh_config, and SSH_ASKPASS / SSH_ASKPASS_REQUIRE without a terminal.
import path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { bastionLines, cliOnce, copyKey, makeKeys, ownAgent, removeDir, tempDir, writeSshConfig } from './lib/builtin-engine'
import { assertCliBuilt } from './lib/cli'
import { describeRun } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'
import { AUTH_ALIASES as A, authEnvOf, kbdPassword, logLines, makeAskpass, startAgent, type Askpass, type AuthEnv } from './lib/testbed-auth'

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

e2eDescribe('built-in engine: authentication like OpenSSH (real sshd variants)', () => {
  let tb: Testbed
  let env: AuthEnv
  let dir: string
  const askpasses: Askpass[] = []

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('ba'), { authVariants: true })
    env = authEnvOf(tb)
    dir = tempDir('bauth')
  })
  afterAll(async () => {
    for (const a of askpasses) a.remove()
    if (dir) removeDir(dir)
    await tb?.down()
  })

  const rsaLogins = (): string[] => logLines(env.rsa512Log, /Accepted publickey for root .* RSA SHA256:/)
  const askpass = (answer: string): Askpass => {
    const a = makeAskpass(answer)
    askpasses.push(a)
    return a
  }

  it('rsa-sha2-512-only server: the RSA key file gets in (offered as rsa-sha2-512 first)', async () => {
    const before = rsaLogins().length
    const r = await cliOnce(tb, A.rsa512, ['-vv'])
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toMatch(/trying publickey \S+id_rsa \(rsa-sha2-512\)/)
    expect(rsaLogins()).toHaveLength(before + 1)
    // PubkeyAcceptedAlgorithms is honoured: rsa-sha2-256 alone is what this server refuses.
    const only256 = await cliOnce(tb, A.rsa512, ['-vv', '-o', 'PubkeyAcceptedAlgorithms=rsa-sha2-256'])
    expect(only256.code, describeRun(only256)).toBe(1)
    expect(only256.stderr).toMatch(/trying publickey \S+id_rsa \(rsa-sha2-256\)/)
    expect(only256.stderr).not.toMatch(/\(rsa-sha2-512\)/)
  })

  it('rsa-sha2-512-only server, key in the agent, IdentityFile only its .pub, IdentitiesOnly: signed by the agent with SHA-512', async () => {
    const pubOnly = copyKey(env.sshKeyRsa, dir, 'rsa_pub_only', { privateToo: false })
    const agent = await ownAgent(dir, [env.sshKeyRsa])
    try {
      const cfg = writeSshConfig(path.join(dir, 'rsa-agent.conf'), {
        h: [...bastionLines(tb, env.rsa512Port), `IdentityFile ${pubOnly}.pub`, 'IdentitiesOnly yes', `IdentityAgent ${agent.sock}`],
      })
      const before = rsaLogins().length
      const r = await cliOnce(tb, 'h', ['-vv'], {}, cfg)
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stderr).toMatch(new RegExp(`trying agent ${esc(pubOnly)}\\.pub \\(rsa-sha2-512\\)`))
      expect(rsaLogins()).toHaveLength(before + 1)
    } finally {
      await agent.stop()
    }
  })

  it('the IdentityFile key goes first, before 6 unrelated agent keys that would exhaust MaxAuthTries', async () => {
    const others = await makeKeys(dir, 6)
    // The right key is the agent's last: ssh2's own order would offer the other six first.
    const agent = await ownAgent(dir, [...others, env.sshKeyRsa])
    const pubOnly = copyKey(env.sshKeyRsa, dir, 'rsa_named', { privateToo: false })
    try {
      const cfg = writeSshConfig(path.join(dir, 'order.conf'), {
        h: [...bastionLines(tb, env.rsa512Port), `IdentityFile ${pubOnly}.pub`, 'IdentitiesOnly no', `IdentityAgent ${agent.sock}`],
      })
      const failedBefore = logLines(env.rsa512Log, /Failed publickey/).length
      const r = await cliOnce(tb, 'h', [], {}, cfg)
      expect(r.code, describeRun(r)).toBe(0)
      expect(logLines(env.rsa512Log, /Failed publickey/)).toHaveLength(failedBefore)
    } finally {
      await agent.stop()
    }
  })

  it('user certificates: beside the key (-cert.pub), by CertificateFile, and from an agent holding only the certificate', async () => {
    const certLogins = (id: string): string[] =>
      logLines(env.usercertLog, new RegExp(`Accepted publickey for root .* ED25519-CERT SHA256:\\S+ ID ${esc(id)} \\(serial \\d+\\) CA ED25519`))
    for (const [alias, id] of [[A.cert, 'usercert'], [A.certFile, 'usercert-file']] as const) {
      const r = await cliOnce(tb, alias)
      expect(r.code, describeRun(r)).toBe(0)
      expect(certLogins(`testbed-${env.name}-${id}`)).toHaveLength(1)
    }
    const agent = await startAgent(tb, { certOnly: true })
    try {
      const r = await cliOnce(tb, A.certAgent, ['-o', `IdentityAgent=${agent.sock}`])
      expect(r.code, describeRun(r)).toBe(0)
      expect(certLogins(`testbed-${env.name}-agentcert`)).toHaveLength(1)
    } finally {
      await agent.stop()
    }
  })

  it('ProxyJump written recursively (target → hop2 → hop1): each hop reached through the one before', async () => {
    const key = [`IdentityFile ${env.sshKey}`, 'IdentitiesOnly yes']
    const cfg = writeSshConfig(path.join(dir, 'chain.conf'), {
      hop1: [...bastionLines(tb, 22), ...key],
      hop2: [...bastionLines(tb, 22), ...key, 'ProxyJump hop1'],
      target: [...bastionLines(tb, 22), ...key, 'ProxyJump hop2'],
      loop1: [...bastionLines(tb, 22), ...key, 'ProxyJump loop2'],
      loop2: [...bastionLines(tb, 22), ...key, 'ProxyJump loop1'],
    })
    const t0 = Date.now()
    const r = await cliOnce(tb, 'target', ['-v'], {}, cfg)
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toMatch(/jump host hop1 is up[\s\S]*jump host hop2 is up/)
    expect(Date.now() - t0).toBeLessThan(20_000) // not the 30 s timeout of a hop dialled directly
    const loop = await cliOnce(tb, 'loop1', [], {}, cfg)
    expect(loop.code, describeRun(loop)).toBe(1)
    expect(loop.stderr).toMatch(/ProxyJump loop: loop1 → loop2 → loop1 .*\[SSH_CONFIG\]/)
  })

  it('SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force answers keyboard-interactive without a terminal, prompt prefixed (user@host)', async () => {
    const a = askpass(kbdPassword(env))
    const r = await cliOnce(tb, A.kbd, [], a.env)
    expect(r.code, describeRun(r)).toBe(0)
    expect(a.prompts()).toEqual([`(${env.kbdUser}@${env.bastionIp}) Password: `])
    expect(logLines(env.kbdLog, new RegExp(`Accepted keyboard-interactive/pam for ${esc(env.kbdUser)} `)).length).toBeGreaterThan(0)
  })

  it('SSH_ASKPASS without a display and without =force is not used (like OpenSSH): SSH_NEED_TTY names the missing answer', async () => {
    const a = askpass(kbdPassword(env))
    const r = await cliOnce(tb, A.kbd, [], { SSH_ASKPASS: a.env.SSH_ASKPASS, DISPLAY: '', WAYLAND_DISPLAY: '' })
    expect(r.code, describeRun(r)).toBe(1)
    expect(a.prompts()).toEqual([])
    expect(r.stderr).toMatch(/needs an answer to the server's keyboard-interactive prompt \(a password or one-time code\) .*\[SSH_NEED_TTY\]/)
    expect(r.stderr).toMatch(/SSH_ASKPASS/)
    // With a display set, SSH_ASKPASS is what OpenSSH would run.
    const d = await cliOnce(tb, A.kbd, [], { SSH_ASKPASS: a.env.SSH_ASKPASS, DISPLAY: ':99' })
    expect(d.code, describeRun(d)).toBe(0)
    expect(a.prompts()).toHaveLength(1)
  })

  it('a wrong answer: asked again up to NumberOfPasswordPrompts, then the hint is about the answer, not the key', async () => {
    const a = askpass('not-the-password')
    const r = await cliOnce(tb, A.kbd, ['-o', 'NumberOfPasswordPrompts=2'], a.env)
    expect(r.code, describeRun(r)).toBe(1)
    expect(a.prompts()).toHaveLength(2)
    expect(r.stderr).toMatch(/\[SSH_AUTH\]/)
    expect(r.stderr).toMatch(/the key was accepted, then the keyboard-interactive answers were not/)
    expect(r.stderr).not.toMatch(/load your key/)
  })
})
