/**
 * SshConnection.reconnectNow() on both engines against a real sshd: the network changed, so a
 * connection that still looks up (its keepalive has not noticed yet) is dropped at once, its
 * held channels fail (their clients get a reset), and a new connection is up without waiting
 * for a backoff delay. The old path is simulated by freezing the per-connection sshd (SIGSTOP):
 * nothing answers on it any more, exactly as after a route change, and keepalive is 60 s here.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isTunnelError } from '../../src/errors'
import { silentLogger } from '../../src/observe/logger'
import type { SshConnection } from '../../src/ssh/engine'
import { makeControlDir } from '../../src/ssh/openssh/engine'
import { masterArgv } from '../../src/ssh/openssh/master-argv'
import { OpensshSession } from '../../src/ssh/openssh/session'
import { echoServer, once } from './helpers'
import { canRunSshd, makeSshdKeys, type RealSshd, sessionTo, type SshdKeys, startRealSshd } from './real-sshd-fixture'

const meta = { id: 1, frontEnd: 'socks5' as const, srcAddress: '127.0.0.1', srcPort: 1 }

describe.skipIf(!canRunSshd)('reconnectNow on both engines (real sshd)', () => {
  let keys: SshdKeys
  let sshd: RealSshd
  let echo: Awaited<ReturnType<typeof echoServer>>
  const stopped: number[] = []

  beforeAll(async () => {
    keys = makeSshdKeys()
    sshd = await startRealSshd(keys)
    echo = await echoServer()
    const known = path.join(keys.dir, 'known_hosts')
    fs.writeFileSync(known, `[127.0.0.1]:${sshd.port} ssh-ed25519 ${keys.hostBlob.toString('base64')}\n`)
  })
  afterAll(async () => {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
    await echo?.close()
    await sshd?.stop()
    fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  const engines: Record<string, () => { conn: SshConnection; close(): Promise<void> }> = {
    builtin: () => {
      // keepalive 60 s and a first reconnect delay of 30 s: only reconnectNow can be quick.
      const conn = sessionTo(sshd.port, keys, { minDelayMs: 30_000, maxDelayMs: 30_000 })
      return { conn, close: () => conn.close() }
    },
    openssh: () => {
      const controlDir = makeControlDir()
      const request = {
        destination: `${os.userInfo().username}@127.0.0.1`,
        configFile: '/dev/null',
        port: sshd.port,
        identities: [keys.keyFile],
        options: [`UserKnownHostsFile=${path.join(keys.dir, 'known_hosts')}`, 'GlobalKnownHostsFile=/dev/null', 'StrictHostKeyChecking=yes'],
      }
      const conn = new OpensshSession({
        ssh: '/usr/bin/ssh',
        controlDir,
        destination: 'b',
        interactive: () => false,
        log: silentLogger,
        minDelayMs: 30_000,
        maxDelayMs: 30_000,
        argsFor: (socketPath, interactive) =>
          masterArgv({ request, socketPath, version: { major: 9, minor: 2 }, interactive, serverAliveInterval: 60, serverAliveCountMax: 3 }),
      })
      return {
        conn,
        close: async () => {
          await conn.close()
          fs.rmSync(controlDir, { recursive: true, force: true })
        },
      }
    },
  }

  for (const [name, make] of Object.entries(engines)) {
    it(`${name}: a frozen path is dropped at once, held channels fail, and a new connection is up within 3 s`, async () => {
      const { conn, close } = make()
      try {
        await conn.start()
        const before = new Set(sshd.children())
        const ch: Duplex = await conn.dial({ host: '127.0.0.1', port: echo.port }, meta)
        const failed = new Promise<unknown>((resolve) => {
          ch.on('error', resolve)
          ch.on('end', () => resolve('clean end'))
        })
        ch.resume()
        // The old path: every sshd serving us stops answering.
        for (const pid of before) {
          process.kill(pid, 'SIGSTOP')
          stopped.push(pid)
        }
        const down = once(conn, 'down', 3000)
        const up = once(conn, 'up', 3000)
        const t0 = performance.now()
        conn.reconnectNow('network changed (test)')
        expect(conn.state).not.toBe('up')
        const err = await failed
        expect(isTunnelError(err, 'SSH_CONNECT'), String(err)).toBe(true)
        expect(performance.now() - t0).toBeLessThan(500)
        expect(isTunnelError(await down, 'SSH_CONNECT')).toBe(true)
        await up
        expect(performance.now() - t0).toBeLessThan(3000)
        expect(conn.stats.reconnects).toBe(1)
        // The new connection carries traffic.
        const again = await conn.dial({ host: '127.0.0.1', port: echo.port }, meta)
        again.write('ping')
        const [data] = (await Promise.all([once<Buffer>(again, 'data', 3000)])) as [Buffer]
        expect(data.toString()).toBe('ping')
        again.destroy()
      } finally {
        await close()
      }
    })

    it(`${name}: a pending backoff delay is cut short`, async () => {
      const { conn, close } = make()
      try {
        await conn.start()
        const down = once(conn, 'down', 5000)
        for (const pid of sshd.children()) process.kill(pid, 'SIGKILL') // the connection dies
        await down
        await new Promise((r) => setTimeout(r, 100)) // now waiting ~30 s for the retry
        const up = once(conn, 'up', 3000)
        conn.reconnectNow('network changed (test)')
        await up
      } finally {
        await close()
      }
    })
  }
})
