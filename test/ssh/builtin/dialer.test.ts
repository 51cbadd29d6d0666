import * as fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isTunnelError } from '../../../src/errors'
import { silentLogger } from '../../../src/observe/logger'
import type { ConnMeta } from '../../../src/router/types'
import { SshSession } from '../../../src/ssh/builtin/session'
import { DialError } from '../../../src/router/dial-error'
import { SshDialer } from '../../../src/ssh/builtin/dialer'
import { echoServer, fakeVerifier, freePort, genKey, hostCfg, once, readAll, scriptedPrompter, tmpDir, TestServer, writeKey, type KeyPair } from '../helpers'

const meta: ConnMeta = { id: 1, frontEnd: 'transparent', srcAddress: '127.0.0.1', srcPort: 40000 }

async function channelError(p: Promise<unknown>): Promise<DialError> {
  try {
    await p
  } catch (e) {
    if (e instanceof DialError) return e
    throw e
  }
  throw new Error('expected a rejection')
}

describe('SshDialer over an in-process ssh2 server', () => {
  let hostKey: KeyPair
  let userKey: KeyPair
  let dir: string
  let keyFile: string
  let echo: Awaited<ReturnType<typeof echoServer>>
  const servers: TestServer[] = []
  const sessions: SshSession[] = []

  beforeAll(async () => {
    hostKey = genKey()
    userKey = genKey()
    dir = tmpDir()
    keyFile = writeKey(dir, 'id', userKey)
    echo = await echoServer()
  })
  afterAll(async () => {
    for (const s of sessions) await s.close()
    for (const s of servers) await s.stop().catch(() => {})
    await echo.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  async function setup(tcpip: 'pipe' | 'none' | 'silent' = 'pipe', port?: number) {
    const srv = new TestServer({ hostKey, userKey, tcpip, port })
    servers.push(srv)
    await srv.start()
    const session = new SshSession({
      target: hostCfg({ port: srv.port, identityFiles: [keyFile] }),
      makeVerifier: () => fakeVerifier(hostKey.blob),
      prompter: scriptedPrompter(null),
      log: silentLogger,
      minDelayMs: 50,
      maxDelayMs: 200,
    })
    sessions.push(session)
    await session.start()
    return { srv, session }
  }

  it('dials through a channel: bytes echo, half-close propagates, channel count goes back to 0', async () => {
    const { session } = await setup()
    const dialer = new SshDialer(session)
    const ch = await dialer.dial({ host: '127.0.0.1', port: echo.port }, meta)
    expect(session.stats).toMatchObject({ channelsOpen: 1, channelsTotal: 1 })
    const got = readAll(ch)
    const closed = once(ch, 'close')
    ch.write('hello ')
    ch.end('world') // EOF only: the echo server answers its remaining bytes, then ends
    expect(await got).toBe('hello world')
    await closed
    expect(session.stats.channelsOpen).toBe(0)
  })

  it('many channels at once over the coalesced transport: each echoes its own bytes, all close', async () => {
    const { session } = await setup()
    const dialer = new SshDialer(session)
    const runOne = async (i: number): Promise<string> => {
      const ch = await dialer.dial({ host: '127.0.0.1', port: echo.port }, { ...meta, id: 100 + i })
      const got = readAll(ch)
      const closed = once(ch, 'close')
      ch.write(`conn ${i} `)
      ch.end('x'.repeat(i * 100))
      const text = await got
      await closed
      // What Writable's autoDestroy does once both sides ended; again by hand: harmless.
      ch.destroy()
      return text
    }
    const texts = await Promise.all(Array.from({ length: 30 }, (_, i) => runOne(i)))
    texts.forEach((t, i) => expect(t).toBe(`conn ${i} ` + 'x'.repeat(i * 100)))
    expect(session.stats).toMatchObject({ channelsOpen: 0, channelsTotal: 30 })
  })

  it('a refused target → CHANNEL_OPEN with reason refused', async () => {
    const { session } = await setup()
    const port = await freePort()
    const e = await channelError(new SshDialer(session).dial({ host: '127.0.0.1', port }, meta))
    expect(e.code).toBe('CHANNEL_OPEN')
    expect(e.reason).toBe('refused')
    expect(e.message).toBe(`ssh: open 127.0.0.1:${port}: connection refused (as seen from 127.0.0.1)`)
  })

  it('a server that refuses forwarding → reason prohibited with an AllowTcpForwarding hint', async () => {
    const { session } = await setup('none')
    const e = await channelError(new SshDialer(session).dial({ host: '127.0.0.1', port: echo.port }, meta))
    expect(e.reason).toBe('prohibited')
    expect(e.hint).toMatch(/AllowTcpForwarding/)
  })

  it('a server that never answers the open → reason timeout after openTimeoutMs', async () => {
    const { session } = await setup('silent')
    const t0 = Date.now()
    const e = await channelError(new SshDialer(session, { openTimeoutMs: 300 }).dial({ host: '127.0.0.1', port: echo.port }, meta))
    expect(e.reason).toBe('timeout')
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('reconnects after an outage: down → reconnecting → up, and dialing works again', async () => {
    const { srv, session } = await setup()
    const events: string[] = []
    session.on('down', (e) => events.push(`down:${isTunnelError(e) ? 'typed' : 'untyped'}`))
    session.on('reconnecting', () => events.push('reconnecting'))
    session.on('up', () => events.push('up'))
    const down = once(session, 'down')
    await srv.stop()
    await down
    expect(session.state === 'down' || session.state === 'connecting').toBe(true)
    // Let at least one attempt fail against the closed port, then bring the server back.
    await once(session, 'reconnecting')
    await once(session, 'reconnecting')
    const up = once(session, 'up')
    await srv.start(srv.port)
    await up
    expect(events[0]).toBe('down:typed')
    expect(events.at(-1)).toBe('up')
    expect(session.stats.reconnects).toBe(1)
    const ch = await new SshDialer(session).dial({ host: '127.0.0.1', port: echo.port }, meta)
    const got = readAll(ch)
    ch.end('again')
    expect(await got).toBe('again')
  })

  it('a dial during an outage fails with NOT_CONNECTED within the bound', async () => {
    const { srv, session } = await setup()
    const down = once(session, 'down')
    await srv.stop()
    await down
    const t0 = Date.now()
    const err = await new SshDialer(session, { outageWaitMs: 400 }).dial({ host: '127.0.0.1', port: echo.port }, meta).catch((e: unknown) => e)
    const took = Date.now() - t0
    expect(isTunnelError(err, 'NOT_CONNECTED')).toBe(true)
    expect(took).toBeGreaterThanOrEqual(350)
    expect(took).toBeLessThan(1500)
  })

  it('waitUp rejects NOT_CONNECTED once the session is closed', async () => {
    const { srv, session } = await setup()
    const down = once(session, 'down')
    await srv.stop()
    await down
    const w = session.waitUp(10_000)
    await session.close()
    await expect(w).rejects.toMatchObject({ code: 'NOT_CONNECTED' })
    expect(session.state).toBe('closed')
  })
})
