import { spawn, execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runRemote } from '../../../src/ssh/builtin/remote-exec'
import type { SshSession } from '../../../src/ssh/builtin/session'
import { DialError } from '../../../src/router/dial-error'
import { SshDialer } from '../../../src/ssh/builtin/dialer'
import { echoServer, freePort, readAll, tmpDir } from '../helpers'
import { type RealSshd, type SshdKeys, canRunSshd, makeSshdKeys, sessionTo, startRealSshd } from '../real-sshd-fixture'

describe.skipIf(!canRunSshd)('against the real OpenSSH sshd', () => {
  let keys: SshdKeys
  let sshd: RealSshd | undefined
  let port: number
  let keyFile: string
  let echo: Awaited<ReturnType<typeof echoServer>>
  let session: SshSession

  beforeAll(async () => {
    keys = makeSshdKeys()
    keyFile = keys.keyFile
    sshd = await startRealSshd(keys)
    port = sshd.port
    echo = await echoServer()
    session = sessionTo(port, keys)
    await session.start()
  })

  afterAll(async () => {
    await session?.close()
    await echo?.close()
    await sshd?.stop()
    if (keys) fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  const meta = { id: 7, frontEnd: 'transparent' as const, srcAddress: '127.0.0.1', srcPort: 50000 }

  it('opens a direct-tcpip channel to a loopback server, with half-close', async () => {
    const ch = await new SshDialer(session).dial({ host: '127.0.0.1', port: echo.port }, meta)
    const got = readAll(ch)
    ch.write('through sshd ')
    ch.end('and back')
    expect(await got).toBe('through sshd and back')
  })

  it("a closed port → CHANNEL_OPEN reason 'refused' (sshd's own connect failed)", async () => {
    const closed = await freePort()
    const err = await new SshDialer(session).dial({ host: '127.0.0.1', port: closed }, meta).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DialError)
    expect((err as DialError).reason).toBe('refused')
    expect((err as DialError).message).toContain(`127.0.0.1:${closed}: connection refused`)
  })

  it('runs a remote command and returns its output and exit code', async () => {
    const r = await runRemote(session, 'echo nameserver 10.9.8.7; echo oops >&2; exit 3')
    expect(r).toEqual({ code: 3, stdout: 'nameserver 10.9.8.7\n', stderr: 'oops\n' })
  })

  it('authenticates with a key held only by a real ssh-agent (no identity file)', async () => {
    const agentDir = tmpDir()
    const sock = path.join(agentDir, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
    try {
      for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20))
      execFileSync('ssh-add', ['-q', keyFile], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' })
      const viaAgent = sessionTo(port, keys, { identityFiles: [], identityAgent: sock })
      try {
        await viaAgent.start()
        const ch = await new SshDialer(viaAgent).dial({ host: '127.0.0.1', port: echo.port }, meta)
        const got = readAll(ch)
        ch.end('agent ok')
        expect(await got).toBe('agent ok')
      } finally {
        await viaAgent.close()
      }
    } finally {
      agent.kill('SIGTERM')
      fs.rmSync(agentDir, { recursive: true, force: true })
    }
  })

  it('without the agent and without identity files, authentication fails with SSH_AUTH', async () => {
    const s = sessionTo(port, keys, { identityFiles: [] })
    await expect(s.start()).rejects.toMatchObject({ code: 'SSH_AUTH' })
    await s.close()
  })
})
