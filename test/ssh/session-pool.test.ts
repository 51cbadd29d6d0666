import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import { SessionPool } from '../../src/ssh/session-pool'
import { SshSession } from '../../src/ssh/session'
import { echoServer, freePort, hostCfg, once, scriptedPrompter, tmpDir } from './helpers'

const SSHD = '/usr/sbin/sshd'
const canRun = fs.existsSync(SSHD) && process.getuid?.() === 0 && fs.existsSync('/usr/bin/prlimit')

// A real sshd whose per-connection processes may open only 64 files — like the usual 1,024
// soft limit, scaled down — so one SSH connection carries only ~60 forwarded connections.
describe.skipIf(!canRun)('SessionPool against a real sshd with a small open-files limit', () => {
  let dir: string
  let sshd: ChildProcess | undefined
  let port: number
  let hostBlob: Buffer
  let keyFile: string
  let echo: Awaited<ReturnType<typeof echoServer>>
  const log = memoryLogger('verbose')
  const sessions: SshSession[] = []

  const newSession = (): SshSession => {
    const s = new SshSession({
      target: hostCfg({ port, user: os.userInfo().username, identityFiles: [keyFile] }),
      makeVerifier: () => ({
        preferredAlgorithms: () => ['ssh-ed25519'],
        verify: async (k) => {
          if (!k.equals(hostBlob)) throw new Error('unexpected host key')
        },
      }),
      prompter: scriptedPrompter(null),
      log,
    })
    sessions.push(s)
    return s
  }

  beforeAll(async () => {
    dir = tmpDir()
    fs.mkdirSync('/run/sshd', { recursive: true })
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id')])
    keyFile = path.join(dir, 'id')
    fs.copyFileSync(`${keyFile}.pub`, path.join(dir, 'authorized_keys'))
    hostBlob = Buffer.from(fs.readFileSync(path.join(dir, 'host_key.pub'), 'utf8').split(/\s+/)[1]!, 'base64')
    port = await freePort()
    fs.writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${path.join(dir, 'host_key')}`,
        `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`, `PidFile ${path.join(dir, 'sshd.pid')}`,
        'StrictModes no', 'UsePAM no', 'PermitRootLogin prohibit-password', 'AllowTcpForwarding yes',
      ].join('\n') + '\n',
    )
    let out = ''
    sshd = spawn('prlimit', ['--nofile=64:64', SSHD, '-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
    sshd.stderr!.on('data', (d: Buffer) => (out += d))
    for (let i = 0; i < 100 && !/Server listening/.test(out); i++) await new Promise((r) => setTimeout(r, 50))
    if (!/Server listening/.test(out)) throw new Error(`sshd did not start: ${out}`)
    echo = await echoServer()
  })

  afterAll(async () => {
    await Promise.all(sessions.map((s) => s.close()))
    await echo?.close()
    if (sshd?.pid && sshd.exitCode === null) {
      const exited = once(sshd, 'exit', 5000).catch(() => {})
      sshd.kill('SIGTERM')
      await exited
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  const meta = (i: number) => ({ id: i, frontEnd: 'transparent' as const, srcAddress: '127.0.0.1', srcPort: 40000 + i })

  async function holdChannels(dialer: { dial: SessionPool['dial'] }, n: number) {
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => dialer.dial({ host: '127.0.0.1', port: echo.port }, meta(i))))
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<import('node:stream').Duplex>).value)
    const failed = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as { reason?: string })
    return { ok, failed }
  }

  it('one connection runs out of files: the extra channels fail with reason "resource"', async () => {
    const first = newSession()
    await first.start()
    const pool = new SessionPool(first, { make: newSession, max: 1, log })
    const { ok, failed } = await holdChannels(pool, 150)
    try {
      expect(ok.length).toBeLessThan(150)
      expect(failed.length).toBeGreaterThan(0)
      expect(failed.every((e) => e.reason === 'resource')).toBe(true)
    } finally {
      for (const ch of ok) ch.destroy()
    }
  })

  it('the pool grows on demand: 150 concurrent channels all open, and still work', async () => {
    const first = newSession()
    await first.start()
    const pool = new SessionPool(first, { make: newSession, max: 6, log })
    const { ok, failed } = await holdChannels(pool, 150)
    try {
      expect(failed).toEqual([])
      expect(ok).toHaveLength(150)
      expect(pool.sessions.length).toBeGreaterThanOrEqual(3)
      expect(pool.sessions.length).toBeLessThanOrEqual(6)
      // Data flows on a channel of the last connection opened.
      const last = ok[ok.length - 1]!
      const got = new Promise<string>((r) => last.once('data', (d: Buffer) => r(d.toString())))
      last.write('ping')
      expect(await got).toBe('ping')
      expect(log.lines.join('\n')).toMatch(/opened SSH connection \d of at most 6/)
    } finally {
      for (const ch of ok) ch.destroy()
      await pool.closeExtra()
    }
  })
})
