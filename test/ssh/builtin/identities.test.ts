// OpenSSH's key order (pubkey_prepare) with a real ssh-agent and real key files.
import { spawn, execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { agentIdentities } from '../../../src/ssh/builtin/agent-client'
import { prepareIdentities, publicOfIdentityFile } from '../../../src/ssh/builtin/identities'
import { blobType, parseCert } from '../../../src/ssh/builtin/key-blobs'
import { silentLogger } from '../../../src/observe/logger'
import { hostCfg, tmpDir } from '../helpers'

const keygen = (...args: string[]): void => void execFileSync('ssh-keygen', ['-q', ...args])

describe('prepareIdentities: OpenSSH order, agent keys matched to IdentityFiles (real ssh-agent)', () => {
  let dir: string
  let sock: string
  let agentPid: number
  const key = (n: string): string => path.join(dir, n)

  beforeAll(async () => {
    dir = tmpDir()
    for (const n of ['named', 'other', 'fileonly', 'cert']) keygen('-t', 'ed25519', '-N', '', '-C', n, '-f', key(n))
    keygen('-t', 'ed25519', '-N', 'secret', '-C', 'enc', '-f', key('enc'))
    keygen('-t', 'ed25519', '-N', '', '-f', key('ca'))
    keygen('-s', key('ca'), '-I', 'cert-id', '-n', 'root', key('cert.pub'))
    sock = path.join(dir, 'agent.sock')
    const a = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
    agentPid = a.pid!
    for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10))
    // Agent order: other, named; the .pub-only file is named by its .pub alone.
    for (const n of ['other', 'named']) execFileSync('ssh-add', ['-q', key(n)], { env: { ...process.env, SSH_AUTH_SOCK: sock } })
    fs.renameSync(key('named'), key('named.moved')) // only named.pub stays
  })
  afterAll(() => {
    process.kill(agentPid, 'SIGTERM')
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const cfg = (o: Parameters<typeof hostCfg>[0]) => hostCfg({ identityAgent: sock, ...o })

  it('named agent keys first, then other agent keys, then file-only keys; a .pub-only IdentityFile goes through the agent', async () => {
    const { ids } = await prepareIdentities(cfg({ port: 22, identityFiles: [key('fileonly'), key('named')] }), { log: silentLogger })
    expect(ids.map((i) => [i.signer, i.label.replace(/ \(.*/, '')])).toEqual([
      ['agent', key('named')],
      ['agent', 'other'],
      ['file', key('fileonly')],
    ])
  })

  it('IdentitiesOnly keeps the named agent keys and drops the others', async () => {
    const { ids } = await prepareIdentities(cfg({ port: 22, identityFiles: [key('named')], identitiesOnly: true }), { log: silentLogger })
    expect(ids.map((i) => i.signer)).toEqual(['agent'])
  })

  it('an encrypted openssh key is matched by its clear public half, without its passphrase', () => {
    fs.renameSync(key('enc.pub'), key('enc.pub.away'))
    try {
      expect(blobType(publicOfIdentityFile(key('enc'))!)).toBe('ssh-ed25519')
    } finally {
      fs.renameSync(key('enc.pub.away'), key('enc.pub'))
    }
  })

  it('a -cert.pub beside the key is offered after the key when the engine can sign certificates; named as unusable when not', async () => {
    const can = await prepareIdentities(cfg({ port: 22, identityFiles: [key('cert')], identitiesOnly: true }), { log: silentLogger, certificates: true })
    expect(can.ids.map((i) => i.label)).toEqual([key('cert'), `${key('cert')}-cert.pub`])
    expect(can.unusable).toEqual([])
    const { ids, unusable } = await prepareIdentities(cfg({ port: 22, identityFiles: [key('cert')], identitiesOnly: true }), { log: silentLogger })
    expect(unusable).toEqual([{ label: `${key('cert')}-cert.pub`, why: 'an OpenSSH certificate (ED25519-CERT ID "cert-id")' }])
    expect(ids.map((i) => i.label)).toEqual([key('cert')])
    const c = parseCert(Buffer.from(fs.readFileSync(`${key('cert')}-cert.pub`, 'utf8').split(' ')[1]!, 'base64'))
    expect(c).toMatchObject({ certType: 1, keyId: 'cert-id', principals: ['root'] })
  })

  it('FIDO keys are named as unusable; PubkeyAcceptedAlgorithms leaves out other key types', async () => {
    // A hand-made sk-ssh-ed25519 public key (no authenticator needed to describe one).
    const str = (b: Buffer | string): Buffer => {
      const d = Buffer.from(b)
      const l = Buffer.alloc(4)
      l.writeUInt32BE(d.length)
      return Buffer.concat([l, d])
    }
    const sk = Buffer.concat([str('sk-ssh-ed25519@openssh.com'), str(Buffer.alloc(32, 7)), str('ssh:')])
    fs.writeFileSync(key('sk.pub'), `sk-ssh-ed25519@openssh.com ${sk.toString('base64')} sk\n`)
    const { unusable } = await prepareIdentities(cfg({ port: 22, identityFiles: [key('sk')], identitiesOnly: true }), { log: silentLogger })
    expect(unusable[0]!.why).toMatch(/FIDO security key/)
    const { ids } = await prepareIdentities(cfg({ port: 22, identityFiles: [key('fileonly')], identitiesOnly: true, pubkeyAcceptedAlgorithms: ['rsa-sha2-512'] }), {
      log: silentLogger,
    })
    expect(ids).toEqual([])
  })

  it('the agent client lists raw identities, certificates included', async () => {
    const list = await agentIdentities(sock)
    expect(list.map((i) => i.comment)).toEqual(['other', 'named'])
  })
})
