import http from 'node:http'
import net from 'node:net'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import { ConnTracker } from '../../src/router/conn-tracker'
import { HandshakeGuard } from '../../src/router/handshake-guard'
import { HttpProxy } from '../../src/router/http-proxy'
import { DialError } from '../../src/router/dial-error'
import { collect, connect, listen, readBytes, run, trickle } from './proxy-test-helpers'
import { FakeDialer } from '../fakes/fake-dialer'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** An origin that describes the request it got; /chunked answers in chunks, POST echoes the body. */
async function origin(): Promise<{ port: number; seen: http.IncomingHttpHeaders[] }> {
  const seen: http.IncomingHttpHeaders[] = []
  const srv = http.createServer((req, res) => {
    seen.push(req.headers)
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (req.url === '/chunked') {
        res.write('part1 ')
        setTimeout(() => res.end('part2'), 10)
        return
      }
      res.setHeader('Content-Type', 'text/plain')
      res.end(`${req.method} ${req.url} host=${req.headers.host}${body ? ` body=${body}` : ''}`)
    })
  })
  const port = await listen(srv)
  cleanups.push(() => {
    srv.closeAllConnections()
    return new Promise((r) => srv.close(r))
  })
  return { port, seen }
}

async function startProxy(dialer: FakeDialer, extra: Partial<ConstructorParameters<typeof HttpProxy>[0]> = {}) {
  const log = memoryLogger()
  const tracker = new ConnTracker()
  const p = new HttpProxy({ port: 0, dialer, access: new AccessPolicy(), log, tracker, ...extra })
  const port = await p.start()
  cleanups.push(() => p.stop())
  return { p, port, log, tracker, url: `http://127.0.0.1:${port}` }
}

describe('HttpProxy plain requests (curl -x)', () => {
  it('forwards a GET by name and strips proxy headers', async () => {
    const o = await origin()
    const dialer = new FakeDialer().set('web.corp', o.port)
    const { url, log, tracker } = await startProxy(dialer)
    const r = await run('curl', ['-sS', '-x', url, '-H', 'Proxy-Connection: keep-alive', 'http://web.corp/a?b=1'])
    expect(r.stdout).toBe('GET /a?b=1 host=web.corp')
    expect(dialer.dialed[0]!.dst).toEqual({ host: 'web.corp', port: 80 })
    expect(dialer.dialed[0]!.meta.frontEnd).toBe('http')
    expect(o.seen[0]!['proxy-connection']).toBeUndefined()
    await new Promise((res) => setTimeout(res, 30))
    expect(tracker.totals).toMatchObject({ active: 0, total: 1, failed: 0 })
    expect(log.lines.join('\n')).toMatch(/#1 http 127\.0\.0\.1:\d+ → web\.corp:80 open/)
  })

  it('serves two requests to two hosts on one client connection (keep-alive)', async () => {
    const o = await origin()
    const dialer = new FakeDialer().set('a', o.port).set('b', o.port)
    const { url } = await startProxy(dialer)
    const r = await run('curl', ['-sSv', '-x', url, 'http://a/1', 'http://b/chunked'])
    expect(r.stdout).toBe('GET /1 host=apart1 part2')
    expect(r.stderr).toMatch(/Re-using existing connection/)
    // Same client socket for both: same source port in both dial metas.
    expect(dialer.dialed.map((d) => d.dst.host)).toEqual(['a', 'b'])
    expect(dialer.dialed[0]!.meta.srcPort).toBe(dialer.dialed[1]!.meta.srcPort)
  })

  it('forwards POST bodies: Content-Length via curl, chunked via node with a keep-alive agent', async () => {
    const o = await origin()
    const dialer = new FakeDialer().set('web', o.port)
    const { port, url } = await startProxy(dialer)
    const r = await run('curl', ['-sS', '-x', url, '-d', 'x=1&y=2', 'http://web/form'])
    expect(r.stdout).toBe('POST /form host=web body=x=1&y=2')

    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    cleanups.push(() => agent.destroy())
    const post = (chunks: string[]): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: 'http://web/up', agent }, (res) => {
          let s = ''
          res.on('data', (d) => (s += d))
          res.on('end', () => resolve(s))
        })
        req.on('error', reject)
        for (const c of chunks) req.write(c) // no length given: node sends chunked
        req.end()
      })
    expect(await post(['ab', 'cd', 'ef'])).toBe('POST /up host=web body=abcdef')
    expect(await post(['second'])).toBe('POST /up host=web body=second')
    expect(o.seen.slice(1).map((h) => h['transfer-encoding'])).toEqual(['chunked', 'chunked'])
    expect(dialer.dialed[1]!.meta.srcPort).toBe(dialer.dialed[2]!.meta.srcPort)
  })

  it('answers 502 with a readable body when the target refuses, and keeps the connection', async () => {
    const o = await origin()
    const err = new DialError('refused', 'ssh: open db:80: connection refused (as seen from bastion)')
    const dialer = new FakeDialer().set('db', err).set('web', o.port)
    const { url, log } = await startProxy(dialer)
    const r = await run('curl', ['-sSv', '-x', url, 'http://db/', 'http://web/ok'])
    expect(r.stderr).toMatch(/< HTTP\/1.1 502 Bad Gateway/)
    expect(r.stdout).toContain('subnet-tunnel could not connect to db:80: connection refused')
    expect(r.stdout).toContain('GET /ok host=web')
    expect(r.stderr).toMatch(/Re-using existing connection/)
    expect(log.lines.join('\n')).toMatch(/warning: #1 http .* → db:80: ssh: open db:80: connection refused/)
  })

  it('answers 504 when the channel open times out', async () => {
    const { url } = await startProxy(new FakeDialer().set('slow', new DialError('timeout', 'ssh: open slow:80: no answer')))
    const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', url, 'http://slow/'])
    expect(r.stdout).toBe('504')
  })
})

describe('HttpProxy CONNECT', () => {
  it('tunnels with curl -p', async () => {
    const o = await origin()
    const dialer = new FakeDialer().set('web:8080', o.port)
    const { url } = await startProxy(dialer)
    const r = await run('curl', ['-sS', '-p', '-x', url, 'http://web:8080/t'])
    expect(r.stdout).toBe('GET /t host=web:8080')
  })

  it('keeps bytes sent right behind the CONNECT head and supports IPv6 targets', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (d) => s.write(d))
      s.on('end', () => s.end())
    })
    const ep = await listen(echo)
    cleanups.push(() => new Promise((r) => echo.close(r)))
    const dialer = new FakeDialer().set('fd00::5', ep)
    const { port } = await startProxy(dialer)
    const c = await connect(port)
    const done = collect(c)
    c.end('CONNECT [fd00:0:0::5]:22 HTTP/1.1\r\nHost: x\r\n\r\nSSH-2.0-early')
    const text = (await done).data.toString()
    expect(text).toBe('HTTP/1.1 200 Connection Established\r\n\r\nSSH-2.0-early')
    expect(dialer.dialed[0]!.dst).toEqual({ host: 'fd00::5', port: 22 })
  })

  it('answers a failed CONNECT with 502 naming the reason', async () => {
    const { port } = await startProxy(new FakeDialer().set('x', new DialError('prohibited', 'ssh: open x:443: administratively prohibited')))
    const c = await connect(port)
    const done = collect(c)
    c.write('CONNECT x:443 HTTP/1.1\r\n\r\n')
    const text = (await done).data.toString()
    expect(text).toMatch(/^HTTP\/1.1 502 Bad Gateway\r\n/)
    expect(text).toContain('not allowed by the SSH server')
  })
})

describe('HttpProxy upgrades', () => {
  it('switches to raw piping after 101 Switching Protocols', async () => {
    const ws = net.createServer({ allowHalfOpen: true }, (s) => {
      s.once('data', (d) => {
        expect(d.toString()).toMatch(/^GET \/chat HTTP\/1.1\r\nHost: ws\r\n[\s\S]*Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n/)
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
        s.on('data', (x) => s.write(Buffer.concat([Buffer.from('echo:'), x])))
        s.on('end', () => s.end())
      })
    })
    const wp = await listen(ws)
    cleanups.push(() => new Promise((r) => ws.close(r)))
    const { port } = await startProxy(new FakeDialer().set('ws', wp))
    const c = await connect(port)
    c.write('GET http://ws/chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
    const want = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'
    expect((await readBytes(c, want.length)).toString()).toBe(want)
    const done = collect(c)
    c.end('frame')
    expect((await done).data.toString()).toBe('echo:frame')
  })
})

describe('HttpProxy access and auth', () => {
  it('asks for credentials with 407 and accepts the right ones', async () => {
    const o = await origin()
    const { url, log } = await startProxy(new FakeDialer().set('web', o.port), { auth: { username: 'bob', password: 's3cr:t' } })
    const none = await run('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-x', url, 'http://web/'])
    expect(none.stdout).toMatch(/^HTTP\/1.1 407 Proxy Authentication Required\r\n/)
    expect(none.stdout).toContain('Proxy-Authenticate: Basic realm="subnet-tunnel"')
    const wrong = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', url, '-U', 'bob:nope', 'http://web/'])
    expect(wrong.stdout).toBe('407')
    const ok = await run('curl', ['-sS', '-x', url, '-U', 'bob:s3cr:t', 'http://web/z'])
    expect(ok.stdout).toBe('GET /z host=web')
    expect(o.seen[0]!['proxy-authorization']).toBeUndefined()
    expect(log.lines.join('\n')).toMatch(/proxy authentication failed for user "bob"/)
    expect(log.lines.join('\n')).not.toContain('nope')
  })

  it('answers 403 to clients outside --allow and logs them', async () => {
    const dialer = new FakeDialer()
    const log = memoryLogger()
    const p = new HttpProxy({ port: 0, dialer, access: new AccessPolicy(['10.0.0.0/8']), log })
    const front = net.createServer({ allowHalfOpen: true }, (sock) => {
      Object.defineProperty(sock, 'remoteAddress', { value: '203.0.113.9' })
      p.handleSocket(sock)
    })
    const port = await listen(front)
    cleanups.push(() => new Promise((r) => front.close(r)), () => p.stop())
    const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${port}`, 'http://web/'])
    expect(r.stdout).toBe('403')
    expect(dialer.dialed).toEqual([])
    expect(log.lines.join('\n')).toMatch(/warning: http-proxy: refused client 203\.0\.113\.9/)
  })
})

describe('HttpProxy robustness', () => {
  it('answers garbage with 400 and origin-form requests with an explanation', async () => {
    const { port } = await startProxy(new FakeDialer())
    for (const [req, want] of [
      ['\x16\x03\x01\x02\x00\x01\x00\r\n\r\n', /^HTTP\/1.1 400 Bad Request/],
      ['GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n', /absolute http:\/\/ URL/],
      ['POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', /both Transfer-Encoding and Content-Length/],
    ] as const) {
      const c = await connect(port)
      const done = collect(c)
      c.write(req)
      expect((await done).data.toString()).toMatch(want)
    }
  })

  it('resets the client when the origin dies mid-response', async () => {
    const half = net.createServer((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial')
        setTimeout(() => s.destroy(), 20)
      })
    })
    const hp = await listen(half)
    cleanups.push(() => new Promise((r) => half.close(r)))
    const { url } = await startProxy(new FakeDialer().set('h', hp))
    const r = await run('curl', ['-sS', '-x', url, 'http://h/'])
    expect(r.code).not.toBe(0) // curl must see an incomplete transfer, not a clean EOF
  })

  it('stop() resets clients and releases upstreams still waiting for a response', async () => {
    let originClosed!: () => void
    const closed = new Promise<void>((r) => (originClosed = r))
    const silent = net.createServer((s) => s.on('close', originClosed).resume()) // reads, never answers
    const sp = await listen(silent)
    cleanups.push(() => new Promise((r) => silent.close(r)))
    const { p, port, tracker } = await startProxy(new FakeDialer().set('slow', sp))
    const c = await connect(port)
    const done = collect(c)
    c.write('GET http://slow/ HTTP/1.1\r\nHost: slow\r\n\r\n')
    while (tracker.totals.active === 0) await new Promise((r) => setTimeout(r, 5))
    await p.stop()
    expect((await done).error).toBe('ECONNRESET')
    await closed
    for (let i = 0; i < 100 && tracker.totals.active > 0; i++) await new Promise((r) => setTimeout(r, 5))
    expect(tracker.totals.active).toBe(0)
  })

  it('survives random bytes from many clients and keeps serving', async () => {
    const o = await origin()
    const { url, port } = await startProxy(new FakeDialer().set('web', o.port), { idleTimeoutMs: 300 })
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.constantFrom('', 'GET http://web/ HTTP/1.1\r\n', 'CONNECT web:80 HTTP/1.1\r\n\r\n'), async (junk, prefix) => {
        const c = await connect(port)
        const done = collect(c)
        c.end(Buffer.concat([Buffer.from(prefix), Buffer.from(junk)]))
        await done
      }),
      { numRuns: 150 },
    )
    const r = await run('curl', ['-sS', '-x', url, 'http://web/still'])
    expect(r.stdout).toBe('GET /still host=web')
  })
})

describe('HttpProxy against slow and excess clients', () => {
  const auth = { username: 'alice', password: 's3cret' }
  const creds = `Proxy-Authorization: Basic ${Buffer.from('alice:s3cret').toString('base64')}\r\n`

  it('closes a client trickling its request head (credentials included) one byte every 30 ms at the absolute deadline', async () => {
    const o = await origin()
    const { port } = await startProxy(new FakeDialer().set('web', o.port), { auth, handshakeTimeoutMs: 400, idleTimeoutMs: 400 })
    const head = Buffer.from(`GET http://web/ HTTP/1.1\r\nHost: web\r\n${creds}X-Pad: ${'x'.repeat(200)}\r\n\r\n`)
    const took = await trickle(await connect(port), head, 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!).toBeGreaterThanOrEqual(350)
    expect(took!).toBeLessThan(1_500)
  })

  it('a kept-alive connection must complete its next request head within the keep-alive deadline', async () => {
    const o = await origin()
    const { port } = await startProxy(new FakeDialer().set('web', o.port), { auth, idleTimeoutMs: 400 })
    const c = await connect(port)
    c.write(`GET http://web/one HTTP/1.1\r\nHost: web\r\n${creds}\r\n`)
    let first = ''
    c.setEncoding('latin1')
    await new Promise<void>((r) => c.on('data', function onData(d: string) {
      first += d
      if (first.endsWith('host=web')) c.off('data', onData).pause(), r()
    }))
    expect(first).toMatch(/^HTTP\/1\.1 200 [^]*GET \/one host=web$/)
    const took = await trickle(c, Buffer.from(`GET http://web/two HTTP/1.1\r\nHost: web\r\n${creds}X-Pad: ${'x'.repeat(200)}\r\n\r\n`), 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!, 'kept alive, then closed at the deadline').toBeGreaterThanOrEqual(350)
    expect(took!).toBeLessThan(1_500)
    expect(o.seen).toHaveLength(1)
  })

  it('a client that lingers after its last response (403 outside --allow, 407) is counted until it closes, at most 2 s', async () => {
    const log = memoryLogger()
    const guard = new HandshakeGuard({ log, perSource: 100 })
    const p = new HttpProxy({ port: 0, dialer: new FakeDialer(), access: new AccessPolicy(['10.0.0.0/8']), log, guard, auth })
    // Clients connect one after another: odd ones come from outside --allow, even ones lack credentials.
    const addrOf = (i: number): string => (i % 2 ? '203.0.113.9' : '10.1.1.1')
    let accepted = 0
    const front = net.createServer({ allowHalfOpen: true }, (sock) => {
      Object.defineProperty(sock, 'remoteAddress', { value: addrOf(accepted++) })
      p.handleSocket(sock)
    })
    const port = await listen(front)
    cleanups.push(() => new Promise((r) => front.close(r)), () => p.stop())
    // Each client reads its answer but never closes its side.
    const clients: { addr: string; sock: net.Socket; answer: Promise<{ data: Buffer }> }[] = []
    const t0 = Date.now()
    for (let i = 0; i < 6; i++) {
      const sock = await connect(port)
      while (accepted <= i) await new Promise((r) => setTimeout(r, 5))
      sock.write('GET http://web/ HTTP/1.1\r\nHost: web\r\n\r\n')
      const answer = new Promise<{ data: Buffer }>((r) => {
        const chunks: Buffer[] = []
        sock.on('data', (d: Buffer) => chunks.push(d)).once('end', () => r({ data: Buffer.concat(chunks) }))
      })
      clients.push({ addr: addrOf(i), sock, answer })
      cleanups.push(() => sock.destroy())
    }
    for (const c of clients) expect((await c.answer).data.toString()).toMatch(c.addr === '10.1.1.1' ? /^HTTP\/1\.1 407/ : /^HTTP\/1\.1 403/)
    for (const addr of ['203.0.113.9', '10.1.1.1']) expect(guard.openFrom(addr)).toBe(clients.filter((c) => c.addr === addr).length)
    while (guard.open > 0 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20))
    expect(guard.open).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_900)
    expect(Date.now() - t0).toBeLessThan(3_000)
  })

  it('answers 503 at once over the cap, and admits again once a waiting client has sent its request', async () => {
    const o = await origin()
    const log = memoryLogger()
    const guard = new HandshakeGuard({ log, perSource: 1, total: 100 })
    const { port } = await startProxy(new FakeDialer().set('web', o.port), { guard, log })
    const waiting = await connect(port)
    waiting.write('GET http://web/slow HTTP/1.1\r\n') // head not finished yet
    await new Promise((r) => setTimeout(r, 50))
    const t0 = Date.now()
    const excess = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const refused = await collect(excess)
    expect(Date.now() - t0).toBeLessThan(1_000)
    expect(refused.data.toString()).toMatch(/^HTTP\/1\.1 503 Service Unavailable[^]*too many connections/)
    waiting.write('Host: web\r\nConnection: close\r\n\r\n')
    expect((await collect(waiting)).data.toString()).toMatch(/GET \/slow host=web$/)
    const r = await run('curl', ['-sS', '-x', `http://127.0.0.1:${port}`, 'http://web/after'])
    expect(r.stdout).toBe('GET /after host=web')
    expect(log.lines.join('\n')).toMatch(/warning: http-proxy: refused 127\.0\.0\.1: 1 connections from 127\.0\.0\.1/)
  })
})
