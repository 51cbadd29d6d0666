import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/observe/logger'
import { runRemote } from '../../src/ssh/remote-exec'
import { SshSession } from '../../src/ssh/session'
import { ChannelOpenError, SshDialer } from '../../src/ssh/ssh-dialer'
import type { HostKeyVerifier } from '../../src/ssh/types'
import { echoServer, freePort, hostCfg, once, readAll, scriptedPrompter, tmpDir } from './helpers'

const SSHD = '/usr/sbin/sshd'
const canRun = fs.existsSync(SSHD) && process.getuid?.() === 0

/** Reads the public key blob from an OpenSSH .pub line ("ssh-ed25519 AAAA… comment"). */
function blobOf(pubLine: string): Buffer {
  return Buffer.from(pubLine.trim().split(/\s+/)[1]!, 'base64')
}

describe.skipIf(!canRun)('against the real OpenSSH sshd', () => {
  let dir: string
  let sshd: ChildProcess | undefined
  let port: number
  let hostBlob: Buffer
  let keyFile: string
  let echo: Awaited<ReturnType<typeof echoServer>>
  let session: SshSession
  let sshdLog = ''

  beforeAll(async () => {
    dir = tmpDir()
    fs.mkdirSync('/run/sshd', { recursive: true }) // privilege separation directory sshd insists on
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id_ed25519')])
    keyFile = path.join(dir, 'id_ed25519')
    fs.copyFileSync(`${keyFile}.pub`, path.join(dir, 'authorized_keys'))
    hostBlob = blobOf(fs.readFileSync(path.join(dir, 'host_key.pub'), 'utf8'))
    port = await freePort()
    const conf = [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'StrictModes no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AllowTcpForwarding yes',
      'LogLevel VERBOSE',
    ].join('\n')
    fs.writeFileSync(path.join(dir, 'sshd_config'), conf + '\n')
    sshd = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
    sshd.stderr!.on('data', (d: Buffer) => (sshdLog += d.toString()))
    // sshd logs "Server listening on …" once the socket is bound.
    for (let i = 0; i < 100 && !/Server listening/.test(sshdLog); i++) await new Promise((r) => setTimeout(r, 50))
    if (!/Server listening/.test(sshdLog)) throw new Error(`sshd did not start: ${sshdLog}`)

    echo = await echoServer()
    const verifier: HostKeyVerifier = {
      preferredAlgorithms: () => ['ssh-ed25519'],
      verify: async (k) => {
        if (!k.equals(hostBlob)) throw new Error('unexpected host key')
      },
    }
    session = new SshSession({
      target: hostCfg({ port, user: os.userInfo().username, identityFiles: [keyFile] }),
      makeVerifier: () => verifier,
      prompter: scriptedPrompter(null),
      log: silentLogger,
    })
    await session.start()
  })

  afterAll(async () => {
    await session?.close()
    await echo?.close()
    if (sshd?.pid && sshd.exitCode === null) {
      const exited = once(sshd, 'exit', 5000).catch(() => {})
      process.kill(sshd.pid, 'SIGTERM')
      await exited
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
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
    expect(err).toBeInstanceOf(ChannelOpenError)
    expect((err as ChannelOpenError).reason).toBe('refused')
    expect((err as ChannelOpenError).message).toContain(`127.0.0.1:${closed}: connection refused`)
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
      const viaAgent = new SshSession({
        target: hostCfg({ port, user: os.userInfo().username, identityFiles: [], identityAgent: sock }),
        makeVerifier: () => ({
          preferredAlgorithms: () => ['ssh-ed25519'],
          verify: async (k) => {
            if (!k.equals(hostBlob)) throw new Error('unexpected host key')
          },
        }),
        prompter: scriptedPrompter(null),
        log: silentLogger,
      })
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
    const s = new SshSession({
      target: hostCfg({ port, user: os.userInfo().username, identityFiles: [] }),
      makeVerifier: () => ({ preferredAlgorithms: () => ['ssh-ed25519'], verify: async () => {} }),
      prompter: scriptedPrompter(null),
      log: silentLogger,
    })
    await expect(s.start()).rejects.toMatchObject({ code: 'SSH_AUTH' })
    await s.close()
  })
})
