import * as fs from 'node:fs'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { isTunnelError } from '../../../src/errors'
import { memoryLogger, silentLogger } from '../../../src/observe/logger'
import { connectChain } from '../../../src/ssh/builtin/connect'
import { SshSession } from '../../../src/ssh/builtin/session'
import { SshDialer } from '../../../src/ssh/builtin/dialer'
import type { SshHostConfig } from '../../../src/config/ssh-config-types'
import { echoServer, fakeVerifier, genKey, hostCfg, once, scriptedPrompter, tmpDir, TestServer, type KeyPair } from '../helpers'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

/** A started session to srv with password 'pw' and no reconnect during the test; closed afterwards. */
async function passwordSession(srv: TestServer, hostKey: KeyPair, target: Partial<SshHostConfig> = {}): Promise<SshSession> {
  const session = new SshSession({
    target: hostCfg({ port: srv.port, ...target }),
    makeVerifier: () => fakeVerifier(hostKey.blob),
    prompter: scriptedPrompter(['pw', 'pw', 'pw']),
    log: silentLogger,
    minDelayMs: 5_000,
  })
  cleanups.push(() => session.close())
  await session.start()
  return session
}

describe('SshSession', () => {
  it('a lost connection fails its open channels with an error, never a clean EOF; closed channels are not counted', async () => {
    const hostKey = genKey()
    const srv = new TestServer({ hostKey, password: 'pw' })
    await srv.start()
    cleanups.push(() => srv.stop())
    const echo = await echoServer()
    cleanups.push(() => echo.close())
    const session = await passwordSession(srv, hostKey)
    const dialer = new SshDialer(session)
    const meta = { id: 1, frontEnd: 'socks5' as const, srcAddress: '127.0.0.1', srcPort: 1 }
    // A channel whose client went away while it was paused must still be released.
    const gone = await dialer.dial({ host: '127.0.0.1', port: echo.port }, meta)
    gone.pause()
    gone.destroy()
    await once(gone, 'close', 5000)
    expect(session.stats.channelsOpen).toBe(0)

    const ch = await dialer.dial({ host: '127.0.0.1', port: echo.port }, meta)
    const events: string[] = []
    ch.on('end', () => events.push('end'))
    ch.on('error', (e: Error) => events.push(`error: ${e.message}`))
    ch.resume()
    expect(session.stats.channelsOpen).toBe(1)
    for (const s of srv.sockets) s.destroy() // the bastion vanishes
    await once(session, 'down', 5000)
    await new Promise((r) => setTimeout(r, 50))
    // The error comes first (ssh2's own cleanup ends the stream right after): whoever pipes the
    // channel resets its client before any EOF could be forwarded as a FIN.
    expect(events[0]).toMatch(/^error: /)
  })

  it('keepalive: a server that stops answering is declared down after interval × (countMax+1)', async () => {
    const hostKey = genKey()
    const srv = new TestServer({ hostKey, password: 'pw' })
    await srv.start()
    cleanups.push(() => srv.stop())
    const session = await passwordSession(srv, hostKey, { serverAliveInterval: 1, serverAliveCountMax: 1 })
    const t0 = Date.now()
    // Freeze the server: it stops reading, so keepalive requests go unanswered.
    for (const s of srv.sockets) s.pause()
    const reason = await once(session, 'down', 8000)
    expect(isTunnelError(reason, 'SSH_CONNECT_TIMEOUT')).toBe(true)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500)
    expect(session.state).toBe('down')
  })

  it('asks for a key passphrase once: a reconnect reuses the decrypted key', async () => {
    const hostKey = genKey()
    const userKey = genKey()
    const dir = tmpDir()
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }))
    const keyFile = path.join(dir, 'id')
    fs.writeFileSync(keyFile, userKey.private, { mode: 0o600 })
    execFileSync('ssh-keygen', ['-q', '-p', '-N', 'pp', '-P', '', '-f', keyFile])
    const srv = new TestServer({ hostKey, userKey })
    await srv.start()
    cleanups.push(() => srv.stop())
    const prompter = scriptedPrompter(['pp'])
    const session = new SshSession({
      target: hostCfg({ port: srv.port, identityFiles: [keyFile] }),
      makeVerifier: () => fakeVerifier(hostKey.blob),
      prompter,
      log: silentLogger,
      minDelayMs: 20,
      maxDelayMs: 50,
    })
    cleanups.push(() => session.close())
    await session.start()
    const up = once(session, 'up')
    for (const s of srv.sockets) s.destroy()
    await up
    expect(prompter.asked).toHaveLength(1)
    expect(session.stats.reconnects).toBe(1)
  })

  it('a host key failure on reconnect is logged as an error and retried, not fatal', async () => {
    const hostKey = genKey()
    const srv = new TestServer({ hostKey, password: 'pw' })
    await srv.start()
    cleanups.push(() => srv.stop())
    let accept = true
    const log = memoryLogger('debug')
    const session = new SshSession({
      target: hostCfg({ port: srv.port }),
      makeVerifier: () => fakeVerifier(accept ? hostKey.blob : genKey().blob),
      prompter: scriptedPrompter(['pw', 'pw', 'pw', 'pw', 'pw']),
      log,
      minDelayMs: 20,
      maxDelayMs: 100,
    })
    cleanups.push(() => session.close())
    await session.start()
    accept = false
    const down = once(session, 'down')
    for (const s of srv.sockets) s.destroy()
    await down
    await once(session, 'reconnecting') // after the failed attempt
    expect(log.lines.some((l) => l.includes('error: reconnect: test: host key changed'))).toBe(true)
    accept = true
    await once(session, 'up', 3000)
    expect(session.state).toBe('up')
  })

  it('start() rejects with the typed error and the session is closed', async () => {
    const session = new SshSession({
      target: hostCfg({ port: 1 }),
      makeVerifier: () => fakeVerifier(Buffer.alloc(0)),
      prompter: scriptedPrompter(null),
      log: silentLogger,
    })
    await expect(session.start()).rejects.toMatchObject({ code: 'SSH_CONNECT_REFUSED' })
    expect(session.state).toBe('closed')
  })

  it('keyboard-interactive prompts go through the prompter with the server-chosen echo, prefixed (user@host)', async () => {
    const hostKey = genKey()
    const srv = new TestServer({ hostKey, kbdAnswer: '123456' })
    await srv.start()
    cleanups.push(() => srv.stop())
    const prompter = scriptedPrompter(['123456'])
    const c = await connectChain(hostCfg({ port: srv.port }), [], { makeVerifier: () => fakeVerifier(hostKey.blob), prompter, log: silentLogger })
    expect(prompter.asked).toEqual([{ q: '(tester@127.0.0.1) Verification code: ', echo: true }])
    c.end()
  })
})
