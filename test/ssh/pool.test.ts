import * as fs from 'node:fs'
import type { Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import type { SshSession } from '../../src/ssh/builtin/session'
import { DEFAULT_MAX_SESSIONS, SessionPool } from '../../src/ssh/pool'
import { echoServer } from './helpers'
import { type RealSshd, type SshdKeys, canRunSshd, makeSshdKeys, sessionTo, startRealSshd } from './real-sshd-fixture'

// A real sshd whose per-connection processes may open only 64 files — like the usual 1,024
// soft limit, scaled down — so one SSH connection carries only ~60 forwarded connections.
describe.skipIf(!canRunSshd || !fs.existsSync('/usr/bin/prlimit'))('SessionPool against a real sshd with a small open-files limit', () => {
  let keys: SshdKeys
  let sshd: RealSshd | undefined
  let echo: Awaited<ReturnType<typeof echoServer>>
  const log = memoryLogger('verbose')
  const sessions: SshSession[] = []

  const newSession = (): SshSession => {
    const s = sessionTo(sshd!.port, keys, { log })
    sessions.push(s)
    return s
  }

  beforeAll(async () => {
    keys = makeSshdKeys()
    sshd = await startRealSshd(keys, { extra: ['AllowTcpForwarding yes'], nofile: 64 })
    echo = await echoServer()
  })

  afterAll(async () => {
    await Promise.all(sessions.map((s) => s.close()))
    await echo?.close()
    await sshd?.stop()
    if (keys) fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  const meta = (i: number) => ({ id: i, frontEnd: 'transparent' as const, srcAddress: '127.0.0.1', srcPort: 40000 + i })

  async function holdChannels(dialer: { dial: SessionPool['dial'] }, n: number) {
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => dialer.dial({ host: '127.0.0.1', port: echo.port }, meta(i))))
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<Duplex>).value)
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
      expect(pool.connections.length).toBeGreaterThanOrEqual(3)
      expect(pool.connections.length).toBeLessThanOrEqual(6)
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

  // 10,000 connections through a bastion at 1,024 files need 10 connections: the default must
  // let the pool grow past the 8 an earlier default allowed. Scaled down: ~60 channels each here.
  it('without max, the pool grows past 8 connections (10 × the channels one connection holds)', async () => {
    expect(DEFAULT_MAX_SESSIONS).toBeGreaterThanOrEqual(10)
    const first = newSession()
    await first.start()
    const pool = new SessionPool(first, { make: newSession, log })
    const { ok, failed } = await holdChannels(pool, 600)
    try {
      expect(failed).toEqual([])
      expect(ok).toHaveLength(600)
      expect(pool.connections.length).toBeGreaterThan(8)
      expect(pool.connections.length).toBeLessThanOrEqual(DEFAULT_MAX_SESSIONS)
    } finally {
      for (const ch of ok) ch.destroy()
      await pool.closeExtra()
    }
  }, 60_000)
})
