import http from 'node:http'
import net from 'node:net'
import fc from 'fast-check'
import { SocksClient } from 'socks'
import { afterEach, describe, expect, it } from 'vitest'
import { TunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import { ConnTracker } from '../../src/router/conn-tracker'
import { HandshakeGuard } from '../../src/router/handshake-guard'
import { Socks5Server } from '../../src/router/socks5-server'
import { Cmd, Method, buildGreeting, buildRequest, buildUserPass } from '../../src/router/socks5-wire'
import { DialError } from '../../src/router/dial-error'
import { collect, connect, listen, readBytes, run, trickle } from './proxy-test-helpers'
import { FakeDialer } from '../fakes/fake-dialer'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function webServer(): Promise<number> {
  const srv = http.createServer((req, res) => res.end(`hello from ${req.headers.host}${req.url}`))
  const port = await listen(srv)
  cleanups.push(() => new Promise((r) => srv.close(r)))
  return port
}

async function echoServer(): Promise<number> {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d) => s.write(d))
    s.on('end', () => s.end('bye'))
  })
  const port = await listen(srv)
  cleanups.push(() => new Promise((r) => srv.close(r)))
  return port
}

async function startSocks(dialer: FakeDialer, extra: Partial<ConstructorParameters<typeof Socks5Server>[0]> = {}) {
  const log = memoryLogger()
  const tracker = new ConnTracker()
  const s = new Socks5Server({ port: 0, dialer, access: new AccessPolicy(), log, tracker, ...extra })
  const port = await s.start()
  cleanups.push(() => s.stop())
  return { s, port, log, tracker }
}

describe('Socks5Server with curl', () => {
  it('resolves names on the remote side (--socks5-hostname passes the name through)', async () => {
    const web = await webServer()
    const dialer = new FakeDialer().set('web.corp.internal:8080', web)
    const { port, log, tracker } = await startSocks(dialer)
    const r = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://web.corp.internal:8080/x'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('hello from web.corp.internal:8080/x')
    expect(dialer.dialed[0]!.dst).toEqual({ host: 'web.corp.internal', port: 8080 })
    expect(dialer.dialed[0]!.meta).toMatchObject({ frontEnd: 'socks5', srcAddress: '127.0.0.1' })
    await new Promise((res) => setTimeout(res, 30))
    expect(tracker.totals).toMatchObject({ active: 0, total: 1, failed: 0 })
    expect(tracker.totals.bytesDown).toBeGreaterThan(30)
    expect(log.lines.join('\n')).toMatch(/#1 socks5 127\.0\.0\.1:\d+ → web\.corp\.internal:8080 open/)
  })

  it('dials IPv6 literals with the full address', async () => {
    const web = await webServer()
    const dialer = new FakeDialer().set('fd00:10::1:2', web)
    const { port } = await startSocks(dialer)
    const r = await run('curl', ['-sS', '--socks5', `127.0.0.1:${port}`, 'http://[fd00:10:0:0:0:0:1:2]:8080/'])
    expect(r.stdout).toMatch(/^hello from/)
    expect(dialer.dialed[0]!.dst).toEqual({ host: 'fd00:10::1:2', port: 8080 })
  })

  it('authenticates with username/password and rejects wrong ones', async () => {
    const web = await webServer()
    const dialer = new FakeDialer().set('web', web)
    const { port, log } = await startSocks(dialer, { auth: { username: 'alice', password: 'pa:ss wörd' } })
    const ok = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, '--proxy-user', 'alice:pa:ss wörd', 'http://web/'])
    expect(ok.stdout).toBe('hello from web/')
    const bad = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, '--proxy-user', 'alice:nope', 'http://web/'])
    expect(bad.code).not.toBe(0)
    const none = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://web/'])
    expect(none.code).not.toBe(0)
    expect(dialer.dialed).toHaveLength(1)
    const text = log.lines.join('\n')
    expect(text).toMatch(/authentication failed for user "alice"/)
    expect(text).not.toContain('nope')
    expect(text).not.toContain('wörd')
  })
})

describe('Socks5Server reply codes (socks client package)', () => {
  const cases: [string, Error, RegExp][] = [
    ['refused', new DialError('refused', 'ssh: open db:5432: connection refused'), /ConnectionRefused/],
    ['unreachable', new DialError('unreachable', 'ssh: open db:5432: no route to host'), /HostUnreachable/],
    ['network unreachable', new DialError('network-unreachable', 'ssh: open db:5432: network is unreachable'), /NetworkUnreachable/],
    ['prohibited', new DialError('prohibited', 'ssh: open db:5432: administratively prohibited'), /NotAllowed/],
    ['timeout', new DialError('timeout', 'ssh: open db:5432: no answer'), /TTLExpired/],
    ['not connected', new TunnelError('NOT_CONNECTED', 'ssh connection lost'), /Failure/],
  ]
  for (const [name, err, want] of cases) {
    it(`maps ${name} to its REP code`, async () => {
      const { port, log } = await startSocks(new FakeDialer().set('db', err))
      const e = await SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port, type: 5 },
        command: 'connect',
        destination: { host: 'db', port: 5432 },
        timeout: 5000,
      }).then(
        (c) => {
          c.socket.destroy()
          return new Error('connected')
        },
        (x: Error) => x,
      )
      expect(e.message).toMatch(want)
      expect(log.lines.join('\n')).toMatch(/warning: #1 socks5 .* → db:5432: /)
    })
  }

  it('answers BIND with 0x07 (command not supported), as a full 10-byte reply', async () => {
    const { port } = await startSocks(new FakeDialer())
    const c = await connect(port)
    c.write(buildGreeting([0]))
    expect(await readBytes(c, 2)).toEqual(Buffer.from([5, 0]))
    c.write(buildRequest(Cmd.BIND, '10.0.0.1', 80))
    const r = await collect(c)
    expect(r.data).toEqual(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0]))
  })

  it('answers 0xFF when the client offers no acceptable method', async () => {
    const { port } = await startSocks(new FakeDialer(), { auth: { username: 'u', password: 'p' } })
    const c = await connect(port)
    c.write(buildGreeting([0]))
    expect((await collect(c)).data).toEqual(Buffer.from([5, 0xff]))
  })
})

describe('Socks5Server stream handling', () => {
  it('keeps pipelined data sent in one write with the handshake, and half-closes', async () => {
    const echo = await echoServer()
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const dialer = new FakeDialer().set('echo', async () => {
      await gate // a slow channel open: the early data must wait, not vanish
      return connect(echo)
    })
    const { port, tracker } = await startSocks(dialer, { auth: { username: 'u', password: 'p' } })
    const c = await connect(port)
    const done = collect(c)
    c.write(Buffer.concat([buildGreeting([2]), buildUserPass('u', 'p'), buildRequest(Cmd.CONNECT, 'echo', 7), Buffer.from('early ')]))
    setTimeout(() => {
      c.end('late')
      setTimeout(release, 50)
    }, 50)
    const r = await done
    // method selection (2) + auth ok (2) + success reply (10), then the echo.
    expect(r.data.subarray(0, 14)).toEqual(Buffer.from([5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]))
    expect(r.data.subarray(14).toString()).toBe('early latebye')
    await new Promise((res) => setTimeout(res, 30))
    expect(tracker.totals).toMatchObject({ bytesUp: 10, bytesDown: 13 })
  })

  it('forwards a FIN that arrives with the request, before the channel opens', async () => {
    const echo = await echoServer()
    const dialer = new FakeDialer().set('echo', async () => {
      await new Promise((r) => setTimeout(r, 100))
      return connect(echo)
    })
    const { port } = await startSocks(dialer)
    const c = await connect(port)
    const done = collect(c)
    c.end(Buffer.concat([buildGreeting([0]), buildRequest(Cmd.CONNECT, 'echo', 7)]))
    const r = await done
    expect(r.data.subarray(12).toString()).toBe('bye') // the echo server saw our EOF
  })

  it('drops clients that stall in the handshake', async () => {
    const { port } = await startSocks(new FakeDialer(), { handshakeTimeoutMs: 150 })
    const c = await connect(port)
    c.write(Buffer.from([5, 1])) // greeting cut short
    const t0 = Date.now()
    await collect(c)
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('refuses clients outside --allow and logs the address once per minute', async () => {
    const dialer = new FakeDialer()
    const log = memoryLogger()
    const s = new Socks5Server({ port: 0, dialer, access: new AccessPolicy(['10.9.0.0/16']), log })
    // A real socket whose peer address we present as a LAN client.
    const front = net.createServer({ allowHalfOpen: true }, (sock) => {
      Object.defineProperty(sock, 'remoteAddress', { value: '192.168.7.7' })
      s.handleSocket(sock)
    })
    const port = await listen(front)
    cleanups.push(() => new Promise((r) => front.close(r)), () => s.stop())
    for (let i = 0; i < 3; i++) {
      const c = await connect(port)
      c.write(Buffer.concat([buildGreeting([0]), buildRequest(Cmd.CONNECT, 'x', 1)]))
      expect((await collect(c)).data.length).toBe(0)
    }
    expect(dialer.dialed).toEqual([])
    expect(log.lines.filter((l) => l.includes('192.168.7.7'))).toHaveLength(1)
    expect(log.lines[0]).toMatch(/warning: socks5: refused client 192\.168\.7\.7: not in --allow/)
  })

  it('survives random bytes from many clients', async () => {
    const web = await webServer()
    const { s, port } = await startSocks(new FakeDialer().set('web', web), { handshakeTimeoutMs: 300 })
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.boolean(), async (junk, socksPrefix) => {
        const c = await connect(port)
        const done = collect(c)
        c.end(Buffer.concat([socksPrefix ? Buffer.from([5, 1, 0]) : Buffer.alloc(0), Buffer.from(junk)]))
        await done
      }),
      { numRuns: 150 },
    )
    // Still serving after all that.
    const r = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${port}`, 'http://web/'])
    expect(r.stdout).toBe('hello from web/')
    expect(s.port).toBe(port)
  })

  it('stop() resets open connections', async () => {
    const echo = await echoServer()
    const { s, port } = await startSocks(new FakeDialer().set('echo', echo))
    const c = await connect(port)
    const done = collect(c)
    c.write(Buffer.concat([buildGreeting([0]), buildRequest(Cmd.CONNECT, 'echo', 7), Buffer.from('x')]))
    await readBytes(c, 13)
    await s.stop()
    expect((await done).error).toBe('ECONNRESET')
  })

  it('reports a busy port as PORT_IN_USE naming -D', async () => {
    const busy = net.createServer()
    const p = await listen(busy)
    cleanups.push(() => new Promise((r) => busy.close(r)))
    const s = new Socks5Server({ port: p, dialer: new FakeDialer(), access: new AccessPolicy(), log: memoryLogger() })
    await expect(s.start()).rejects.toMatchObject({ code: 'PORT_IN_USE', message: expect.stringContaining('-D') })
  })
})

describe('Socks5Server against slow and excess clients', () => {
  it('closes a client trickling its greeting one byte every 30 ms at the absolute deadline', async () => {
    const { port } = await startSocks(new FakeDialer(), { handshakeTimeoutMs: 400 })
    // 255 methods: 257 bytes, 7.7 s at this pace; each byte would reset an idle timer.
    const greeting = buildGreeting([...Array(255).keys()])
    const took = await trickle(await connect(port), greeting, 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!).toBeGreaterThanOrEqual(350)
    expect(took!).toBeLessThan(1_500)
  })

  it('the deadline covers authentication: credentials trickled after the greeting are cut off too', async () => {
    const { port, log } = await startSocks(new FakeDialer(), { handshakeTimeoutMs: 400, auth: { username: 'alice', password: 's3cret' } })
    const c = await connect(port)
    c.write(buildGreeting([Method.USERPASS]))
    expect([...(await readBytes(c, 2))]).toEqual([5, Method.USERPASS])
    const creds = buildUserPass('a'.repeat(200), 'b'.repeat(200))
    const took = await trickle(c, creds, 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!).toBeLessThan(1_500)
    expect(log.lines.join('\n')).toMatch(/handshake not complete within 400 ms/)
  })

  it('lets a browser open 200 connections at once with the default limits', async () => {
    const echo = await echoServer()
    const { port, log } = await startSocks(new FakeDialer().set('echo', echo), { auth: { username: 'u', password: 'p' } })
    const hello = Buffer.concat([buildGreeting([Method.USERPASS]), buildUserPass('u', 'p'), buildRequest(Cmd.CONNECT, 'echo', 7), Buffer.from('hi')])
    const socks = await Promise.all(Array.from({ length: 200 }, () => connect(port)))
    for (const c of socks) c.write(hello)
    const replies = await Promise.all(socks.map((c) => readBytes(c, 2 + 2 + 10 + 2)))
    expect(replies.filter((r) => r.subarray(14).toString() === 'hi')).toHaveLength(200)
    expect(log.lines.join('\n')).not.toMatch(/refused/)
    for (const c of socks) c.destroy()
  })

  it('resets clients over the per-source cap at once and admits again once one has finished its handshake', async () => {
    const echo = await echoServer()
    const log = memoryLogger()
    const guard = new HandshakeGuard({ log, perSource: 2, total: 100 })
    const { port } = await startSocks(new FakeDialer().set('echo', echo), { guard, log })
    const a = await connect(port)
    const b = await connect(port)
    a.write(Buffer.from([5])) // both stall in their greeting
    b.write(Buffer.from([5]))
    await new Promise((r) => setTimeout(r, 50))
    // (The reset may come before the client's own 'connect' event: no awaiting connect here.)
    const excess = net.connect({ port, host: '127.0.0.1' })
    const refused = collect(excess)
    excess.write(buildGreeting([0]))
    expect(await refused).toEqual({ data: Buffer.alloc(0), error: 'ECONNRESET' })
    expect(guard.openFrom('127.0.0.1')).toBe(2)
    // a completes its handshake: its slot is free, the next client gets in and is served.
    a.write(Buffer.concat([Buffer.from([1, 0]), buildRequest(Cmd.CONNECT, 'echo', 7)]))
    expect((await readBytes(a, 12)).subarray(2, 4)).toEqual(Buffer.from([5, 0]))
    const next = await connect(port)
    next.write(Buffer.concat([buildGreeting([0]), buildRequest(Cmd.CONNECT, 'echo', 7), Buffer.from('ping')]))
    expect((await readBytes(next, 16)).subarray(12).toString()).toBe('ping')
    expect(log.lines.join('\n')).toMatch(/warning: socks5: refused 127\.0\.0\.1: 2 connections from 127\.0\.0\.1 are already in their handshake \(cap 2\)/)
    for (const s of [a, b, next]) s.destroy()
  })
})
