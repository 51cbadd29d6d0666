// User certificates through the built-in engine (ssh2-compat-auth.ts item 12) against a real
// sshd that trusts a user CA and accepts nothing else: ED25519, ECDSA and RSA certificates (the
// last only as rsa-sha2-512), from the key file and from a real ssh-agent.
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { canRunSshd, makeSshdKeys, sessionTo, startRealSshd, type RealSshd, type SshdKeys } from '../real-sshd-fixture'

const keygen = (...args: string[]): void => void execFileSync('ssh-keygen', ['-q', ...args])

describe.skipIf(!canRunSshd)('user certificates with the built-in engine (real sshd, TrustedUserCAKeys only)', () => {
  let keys: SshdKeys
  let sshd: RealSshd
  let agentPid = 0
  let sock = ''
  const key = (n: string): string => path.join(keys.dir, n)

  beforeAll(async () => {
    keys = makeSshdKeys()
    keygen('-t', 'ed25519', '-N', '', '-f', key('user_ca'))
    for (const [n, t] of [['c_ed', 'ed25519'], ['c_ecdsa', 'ecdsa'], ['c_rsa', 'rsa'], ['c_agent', 'rsa']] as const) {
      keygen('-t', t, '-N', '', '-C', n, '-f', key(n))
      keygen('-s', key('user_ca'), '-I', `id-${n}`, '-n', os.userInfo().username, '-V', '-5m:+1h', key(`${n}.pub`))
    }
    sshd = await startRealSshd(keys, {
      name: 'usercert',
      extra: [
        `TrustedUserCAKeys ${key('user_ca.pub')}`,
        'PubkeyAcceptedAlgorithms ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com',
      ],
    })
    sock = key('agent.sock')
    agentPid = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' }).pid!
    for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10))
    execFileSync('ssh-add', ['-q', key('c_agent')], { env: { ...process.env, SSH_AUTH_SOCK: sock } }) // adds its -cert.pub too
    fs.rmSync(key('c_agent')) // the agent alone can sign
  })
  afterAll(async () => {
    if (agentPid) process.kill(agentPid, 'SIGTERM')
    await sshd?.stop()
    if (keys) fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  const accepted = (id: string, type: string): RegExp => new RegExp(`Accepted publickey for \\S+ .* ${type}-CERT SHA256:\\S+ ID id-${id} `)

  it.each([
    ['c_ed', 'ED25519'],
    ['c_ecdsa', 'ECDSA'],
    ['c_rsa', 'RSA'],
  ])('%s: the -cert.pub beside the key gets in (%s-CERT)', async (n, type) => {
    const s = sessionTo(sshd.port, keys, { identityFiles: [key(n)] })
    await s.start()
    await s.close()
    expect(sshd.log()).toMatch(accepted(n, type))
  })

  it('an RSA certificate held by the agent (its key file gone): signed by the agent with SHA-512', async () => {
    const s = sessionTo(sshd.port, keys, { identityFiles: [`${key('c_agent')}.pub`], identityAgent: sock })
    await s.start()
    await s.close()
    expect(sshd.log()).toMatch(accepted('c_agent', 'RSA'))
  })
})
