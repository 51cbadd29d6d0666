// The built-in engine (ssh2) against real sshd set-ups it cannot fully handle (issue 14, items 2,
// 7 and 8): algorithm lists from ssh_config / -o, the server's offer on "no matching …", and a
// message that says exactly what is missing and names `--ssh-engine openssh` — for a host vouched
// for by @cert-authority, a post-quantum-only KEX and GSSAPI-only servers. Never ssh-keyscan
// advice for a CA-signed host. (User certificates work: builtin-auth.test.ts.)
import path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { bastionLines, cliOnce, extraSshd, makeKeys, ownAgent, removeDir, tempDir, writeSshConfig, type ExtraSshd } from './lib/builtin-engine'
import { assertCliBuilt } from './lib/cli'
import { describeRun, type RunResult } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'
import { AUTH_ALIASES as A, authEnvOf, logLines, type AuthEnv } from './lib/testbed-auth'

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const OPENSSH = /--ssh-engine openssh/

/** The CLI's error line and hint, and that it failed before anything went up. */
function failed(r: RunResult, code: string): string {
  expect(r.code, describeRun(r)).toBe(1)
  expect(r.stderr).toContain(`[${code}]`)
  expect(r.stderr).not.toMatch(/\bup:/)
  return r.stderr
}

e2eDescribe('built-in engine: what ssh2 cannot do is named, with --ssh-engine openssh (real sshd variants)', () => {
  let tb: Testbed
  let env: AuthEnv
  let dir: string
  const sshds: ExtraSshd[] = []

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('bl'), { authVariants: true })
    env = authEnvOf(tb)
    dir = tempDir('limits')
  })
  afterAll(async () => {
    for (const s of sshds) await s.stop()
    if (dir) removeDir(dir)
    await tb?.down()
  })

  it('an agent key the server refuses counts as offered: named in the hint, not "no key was offered"', async () => {
    const other = (await makeKeys(dir, 1, 'refused'))[0]!
    const agent = await ownAgent(dir, [other])
    try {
      const r = await cliOnce(tb, A.certAgent, ['-o', `IdentityAgent=${agent.sock}`])
      const out = failed(r, 'SSH_AUTH')
      expect(out).toMatch(/keys tried: refused0 \(ED25519 SHA256:\S+\)/)
      expect(out).not.toMatch(/no key was offered/)
    } finally {
      await agent.stop()
    }
  })

  it('MaxAuthTries used up by agent keys: the server\'s words, and how to offer the right key first', async () => {
    const agent = await ownAgent(dir, await makeKeys(dir, 7, 'many'))
    try {
      const cfg = writeSshConfig(path.join(dir, 'many.conf'), { many: [...bastionLines(tb, 22), 'IdentitiesOnly no', `IdentityAgent ${agent.sock}`] })
      const out = failed(await cliOnce(tb, 'many', [], {}, cfg), 'SSH_AUTH')
      expect(out).toMatch(/the server disconnected: .*Too many authentication failures.*MaxAuthTries/)
      expect(out).toMatch(/IdentitiesOnly=yes/)
    } finally {
      await agent.stop()
    }
  })

  it('@cert-authority host (good CA, other CA, plain key): SSH_UNSUPPORTED, never ssh-keyscan or accept-new', async () => {
    for (const alias of [A.hostcert, A.hostcertBadca, A.hostcertPlain]) {
      const out = failed(await cliOnce(tb, alias), 'SSH_UNSUPPORTED')
      expect(out).toMatch(/vouched for by a certificate authority \(@cert-authority, .*known_hosts\.ca:1\)/)
      expect(out).toMatch(OPENSSH)
      expect(out).not.toMatch(/ssh-keyscan|accept-new/)
    }
    expect(logLines(env.hostcertLog, /Accepted/)).toEqual([])
  })

  it('post-quantum-only KEX: "no matching key exchange method found. Their offer: …", SSH_UNSUPPORTED', async () => {
    const out = failed(await cliOnce(tb, A.pq), 'SSH_UNSUPPORTED')
    expect(out).toMatch(new RegExp(`no matching key exchange method found\\. Their offer: ${esc(env.pqKex)} \\(the server offers only post-quantum key exchange`))
    expect(out).toMatch(OPENSSH)
  })

  it('KexAlgorithms / HostKeyAlgorithms / MACs from -o are used; what ssh2 lacks is named; a list that rules out the offer shows it', async () => {
    const r = await cliOnce(tb, 'bastion', [
      '-vv', '-o', `KexAlgorithms=${env.pqKex},diffie-hellman-group14-sha256`, '-o', 'MACs=hmac-sha2-512', '-o', 'Ciphers=aes128-ctr',
    ])
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`KexAlgorithms: the built-in engine cannot use ${esc(env.pqKex)}; offering diffie-hellman-group14-sha256`))
    expect(r.stderr).toMatch(/Handshake: KEX algorithm: diffie-hellman-group14-sha256/)
    expect(r.stderr).toMatch(/Handshake: C->S MAC: hmac-sha2-512/)
    // The main sshd has only an ed25519 host key.
    const hk = failed(await cliOnce(tb, 'bastion', ['-o', 'HostKeyAlgorithms=rsa-sha2-512,ecdsa-sha2-nistp256']), 'SSH_PROTOCOL')
    expect(hk).toMatch(/no matching host key type found\. Their offer: ssh-ed25519\b/)
    expect(hk).toMatch(/HostKeyAlgorithms=\+ssh-ed25519/)
    // Only names ssh2 lacks: refused before connecting, with the engine that has them.
    const pq = failed(await cliOnce(tb, 'bastion', ['-o', `KexAlgorithms=${env.pqKex}`]), 'SSH_UNSUPPORTED')
    expect(pq).toMatch(/KexAlgorithms .*: the built-in engine \(ssh2\) supports none of these/)
    // A "-" form applies to OpenSSH's default list (aes128-ctr: GCM would make the MAC implicit).
    const macs = await cliOnce(tb, 'bastion', ['-vv', '-o', 'MACs=-hmac-sha2-256*,hmac-sha1*,umac*', '-o', 'Ciphers=aes128-ctr'])
    expect(macs.code, describeRun(macs)).toBe(0)
    expect(macs.stderr).toMatch(/Handshake: \(local\) C->S MAC: hmac-sha2-512-etm@openssh\.com,hmac-sha2-512\n/)
    expect(macs.stderr).toMatch(/Handshake: C->S MAC: hmac-sha2-512-etm@openssh\.com\n/)
  })

  it('a server that accepts only GSSAPI: SSH_UNSUPPORTED naming Kerberos, not "load your key"', async () => {
    const sshd = await extraSshd(tb, dir, path.join(env.dir, 'auth', 'sshd_config.rsa512'), 2291, [
      'GSSAPIAuthentication yes', 'AuthenticationMethods gssapi-with-mic',
    ])
    sshds.push(sshd)
    const cfg = writeSshConfig(path.join(dir, 'gssapi.conf'), {
      gss: [...bastionLines(tb, sshd.port), `IdentityFile ${env.sshKey}`, 'IdentitiesOnly yes'],
    })
    const out = failed(await cliOnce(tb, 'gss', [], {}, cfg), 'SSH_UNSUPPORTED')
    expect(out).toMatch(/accepts only GSSAPI \(Kerberos\) authentication \(gssapi-with-mic\)/)
    expect(out).toMatch(OPENSSH)
  })
})
