import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isTunnelError, type TunnelError } from '../../../src/errors'
import { silentLogger } from '../../../src/observe/logger'
import { connectChain } from '../../../src/ssh/builtin/connect'
import { fakeVerifier, freePort, genKey, hostCfg, scriptedPrompter, tmpDir, TestServer, writeKey, type KeyPair } from '../helpers'

async function rejected(p: Promise<unknown>): Promise<TunnelError> {
  try {
    await p
  } catch (e) {
    if (!isTunnelError(e)) throw e
    return e
  }
  throw new Error('expected a rejection')
}

describe('connectChain: auth and transport against an in-process ssh2 server', () => {
  let hostKey: KeyPair
  let userKey: KeyPair
  let srv: TestServer
  let dir: string
  let keyFile: string

  beforeAll(async () => {
    hostKey = genKey()
    userKey = genKey()
    srv = new TestServer({ hostKey, userKey, password: 's3cret' })
    await srv.start()
    dir = tmpDir()
    keyFile = writeKey(dir, 'id_ed25519', userKey)
  })
  afterAll(async () => {
    await srv.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const deps = (answers: string[] | null = null) => ({
    makeVerifier: () => fakeVerifier(hostKey.blob),
    prompter: scriptedPrompter(answers),
    log: silentLogger,
  })

  it('authenticates with an identity file, skipping files that do not exist', async () => {
    const calls: Buffer[] = []
    const cfg = hostCfg({ port: srv.port, identityFiles: [path.join(dir, 'missing'), keyFile] })
    const c = await connectChain(cfg, [], { ...deps(), makeVerifier: () => fakeVerifier(hostKey.blob, calls) })
    expect(calls).toHaveLength(1)
    expect(calls[0]!.equals(hostKey.blob)).toBe(true)
    expect(srv.authMethods.at(-1)).toBe('publickey')
    c.end()
  })

  it('an encrypted key without a terminal fails with SSH_NEED_TTY and never asks', async () => {
    const enc = writeKey(dir, 'id_enc', genKey('pw'))
    const p = scriptedPrompter(null)
    const cfg = hostCfg({ port: srv.port, identityFiles: [enc], passwordAuthentication: false })
    const e = await rejected(connectChain(cfg, [], { ...deps(), prompter: p }))
    expect(e.code).toBe('SSH_NEED_TTY')
    expect(e.hint).toMatch(/ssh-add/)
    expect(p.asked).toHaveLength(0)
  })

  it('an encrypted key with a prompter: a wrong passphrase is asked again ("Bad passphrase"), then it works', async () => {
    // The key the server accepts, stored encrypted.
    const enc = path.join(dir, 'id_enc_ok')
    fs.writeFileSync(enc, encrypted(userKey, 'right'), { mode: 0o600 })
    const p = scriptedPrompter(['wrong', 'right'])
    const cfg = hostCfg({ port: srv.port, identityFiles: [enc] })
    const c = await connectChain(cfg, [], { ...deps(), prompter: p })
    expect(p.asked.map((a) => a.q)).toEqual([`Enter passphrase for key '${enc}': `, `Bad passphrase, try again for '${enc}': `])
    expect(p.asked.every((a) => a.echo === false)).toBe(true)
    c.end()
  })

  it('password auth asks "user@host\'s password: " with echo off', async () => {
    const p = scriptedPrompter(['s3cret'])
    const cfg = hostCfg({ port: srv.port, identityFiles: [] })
    const c = await connectChain(cfg, [], { ...deps(), prompter: p })
    expect(p.asked).toEqual([{ q: "tester@127.0.0.1's password: ", echo: false }])
    expect(srv.authMethods.at(-1)).toBe('password')
    c.end()
  })

  it('a key the server does not accept → SSH_AUTH naming the key', async () => {
    const other = writeKey(dir, 'id_other', genKey())
    const cfg = hostCfg({ port: srv.port, identityFiles: [other], passwordAuthentication: false, kbdInteractiveAuthentication: false })
    const e = await rejected(connectChain(cfg, [], deps()))
    expect(e.code).toBe('SSH_AUTH')
    expect(e.message).toMatch(/tester@127\.0\.0\.1: permission denied \(methods tried: publickey/)
    expect(e.hint).toContain(other)
  })

  it('BatchMode never prompts, even with a terminal', async () => {
    const p = scriptedPrompter(['s3cret'])
    const cfg = hostCfg({ port: srv.port, batchMode: true })
    const e = await rejected(connectChain(cfg, [], { ...deps(), prompter: p }))
    expect(e.code).toBe('SSH_AUTH')
    expect(p.asked).toHaveLength(0)
  })

  it("the verifier's own error code survives the handshake", async () => {
    const cfg = hostCfg({ port: srv.port, identityFiles: [keyFile] })
    const e = await rejected(connectChain(cfg, [], { ...deps(), makeVerifier: () => fakeVerifier(genKey().blob) }))
    expect(e.code).toBe('HOSTKEY_MISMATCH')
    expect(e.message).toBe('test: host key changed')
  })

  it('connection refused → SSH_CONNECT_REFUSED naming host:port', async () => {
    const port = await freePort()
    const e = await rejected(connectChain(hostCfg({ port }), [], deps()))
    expect(e.code).toBe('SSH_CONNECT_REFUSED')
    expect(e.message).toContain(`127.0.0.1:${port}`)
    expect(e.hint).toContain(String(port))
  })

  it('a server that never speaks SSH → SSH_CONNECT_TIMEOUT after ConnectTimeout', async () => {
    const socks: net.Socket[] = []
    const mute = net.createServer((s) => socks.push(s))
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()))
    const port = (mute.address() as net.AddressInfo).port
    const t0 = Date.now()
    const e = await rejected(connectChain(hostCfg({ port, connectTimeout: 1 }), [], deps()))
    expect(e.code).toBe('SSH_CONNECT_TIMEOUT')
    expect(Date.now() - t0).toBeLessThan(3000)
    for (const s of socks) s.destroy()
    mute.close()
  })

  it('ProxyCommand: socat carries the connection', async () => {
    // Port 1 in the config proves the bytes went through the command, not a direct connect.
    const mark = path.join(dir, 'proxy-ran')
    const cfg = hostCfg({ port: 1, identityFiles: [keyFile], proxyCommand: `sh -c 'touch ${mark}; exec socat - TCP:127.0.0.1:${srv.port}'` })
    const c = await connectChain(cfg, [], deps())
    expect(fs.existsSync(mark)).toBe(true)
    const closed = new Promise<void>((r) => c.once('close', () => r()))
    c.end()
    await closed
  })

  it('ProxyCommand that exits early → SSH_CONNECT with its last stderr line', async () => {
    const cfg = hostCfg({ port: srv.port, proxyCommand: `sh -c 'echo starting >&2; echo "bastion-proxy: no such target" >&2; exit 3'` })
    const e = await rejected(connectChain(cfg, [], deps()))
    expect(e.code).toBe('SSH_CONNECT')
    expect(e.message).toMatch(/ProxyCommand .*exited with code 3: bastion-proxy: no such target/)
  })
})

/** The same key pair as k, written encrypted with passphrase (via ssh-keygen -p on a copy). */
function encrypted(k: KeyPair, passphrase: string): string {
  const d = tmpDir()
  const f = path.join(d, 'k')
  fs.writeFileSync(f, k.private, { mode: 0o600 })
  execFileSync('ssh-keygen', ['-q', '-p', '-N', passphrase, '-P', '', '-f', f])
  const out = fs.readFileSync(f, 'utf8')
  fs.rmSync(d, { recursive: true, force: true })
  return out
}
