import * as fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isTunnelError } from '../../../src/errors'
import { silentLogger } from '../../../src/observe/logger'
import { connectChain } from '../../../src/ssh/builtin/connect'
import type { HostKeyVerifier } from '../../../src/ssh/builtin/types'
import type { SshHostConfig } from '../../../src/config/ssh-config-types'
import { fakeVerifier, genKey, hostCfg, once, scriptedPrompter, tmpDir, TestServer, writeKey, type KeyPair } from '../helpers'

describe('ProxyJump through two in-process servers', () => {
  let jumpKey: KeyPair
  let targetKey: KeyPair
  let userKey: KeyPair
  let jump: TestServer
  let target: TestServer
  let dir: string
  let keyFile: string

  beforeAll(async () => {
    jumpKey = genKey()
    targetKey = genKey()
    userKey = genKey()
    dir = tmpDir()
    keyFile = writeKey(dir, 'id', userKey)
    jump = new TestServer({ hostKey: jumpKey, userKey, tcpip: 'pipe' })
    target = new TestServer({ hostKey: targetKey, userKey, tcpip: 'none' })
    await jump.start()
    await target.start()
  })
  afterAll(async () => {
    await jump.stop()
    await target.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const cfgs = () => ({
    hop: hostCfg({ alias: 'jump1', port: jump.port, identityFiles: [keyFile] }),
    dest: hostCfg({ alias: 'inner', port: target.port, identityFiles: [keyFile] }),
  })

  it('verifies each hop with its own verifier and reaches the target through the first', async () => {
    const { hop, dest } = cfgs()
    const seen: string[] = []
    const makeVerifier = (cfg: SshHostConfig): HostKeyVerifier => {
      seen.push(cfg.alias)
      return fakeVerifier(cfg.alias === 'jump1' ? jumpKey.blob : targetKey.blob)
    }
    const client = await connectChain(dest, [hop], { makeVerifier, prompter: scriptedPrompter(null), log: silentLogger })
    expect(seen).toEqual(['jump1', 'inner'])
    expect(jump.conns.size).toBe(1)
    expect(target.conns.size).toBe(1)
    // The target sees the connection coming from the jump server (loopback here), not from us
    // directly: only one TCP connection reached it, opened by the jump server's direct-tcpip.
    const jumpConn = [...jump.conns][0]!
    const jumpClosed = once(jumpConn, 'close')
    client.end()
    await jumpClosed // closing the final client closes the whole chain
  })

  it("a hop's host key failure is reported with the verifier's code, and nothing stays open", async () => {
    const { hop, dest } = cfgs()
    const makeVerifier = (cfg: SshHostConfig): HostKeyVerifier =>
      fakeVerifier(cfg.alias === 'jump1' ? jumpKey.blob : genKey().blob)
    const err = await connectChain(dest, [hop], { makeVerifier, prompter: scriptedPrompter(null), log: silentLogger }).catch((e: unknown) => e)
    expect(isTunnelError(err, 'HOSTKEY_MISMATCH')).toBe(true)
    await new Promise((r) => setTimeout(r, 200))
    expect(jump.conns.size).toBe(0)
  })

  it('a jump host that cannot reach the next hop names it', async () => {
    const { hop } = cfgs()
    const dead = hostCfg({ alias: 'dead', port: 1, identityFiles: [keyFile] })
    const err = await connectChain(dead, [hop], { makeVerifier: () => fakeVerifier(jumpKey.blob), prompter: scriptedPrompter(null), log: silentLogger }).catch((e: unknown) => e)
    expect(isTunnelError(err, 'SSH_CONNECT_REFUSED')).toBe(true)
    expect((err as Error).message).toMatch(/127\.0\.0\.1:1.*jump host jump1/)
  })
})
