/**
 * Fuzzing the HTTP proxy's stream handling (src/router/http-proxy-session.ts over
 * byte-reader.ts) with chosen chunk boundaries (see fuzz-streams.ts): a request split anywhere
 * reaches the origin as exactly the rewritten request, CONNECT tunnels keep pipelined bytes, and
 * random bytes in random chunks always end the session with an HTTP error (or nothing) — run()
 * never rejects.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { memoryLogger } from '../../src/observe/logger'
import { ConnTracker } from '../../src/router/conn-tracker'
import { HandshakeGuard } from '../../src/router/handshake-guard'
import { HttpProxySession } from '../../src/router/http-proxy-session'
import { buildOriginRequest, parseRequestHead, parseTarget } from '../../src/router/http-proxy-wire'
import type { FakeDialer } from '../fakes/fake-dialer'
import { FakeSocket, type FakeRemote, feed, remoteDialer, splitAt, until } from './fuzz-streams'

const answered = new WeakSet<FakeRemote>()

/** An origin that answers 200 with a 2-byte body once the request head is complete. */
function origin(received: Buffer, remote: FakeRemote): void {
  if (!received.includes('\r\n\r\n') || answered.has(remote)) return
  answered.add(remote)
  remote.push('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
  remote.push(null)
}

function session(dialer: FakeDialer, sock: FakeSocket): Promise<void> {
  const log = memoryLogger()
  const guard = new HandshakeGuard({ log })
  return new HttpProxySession(sock.asSocket(), { dialer, tracker: new ConnTracker(), log, guard, firstHeadMs: 60_000, idleTimeoutMs: 60_000 }).run()
}

const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,12}$/).filter((t) => !/^(host|connection|proxy-connection|keep-alive|te|upgrade|transfer-encoding|content-length|proxy-authorization|proxy-authenticate)$/i.test(t))
const fieldValue = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/)

describe('HttpProxySession stream handling under fuzzing', () => {
  it('a plain request split anywhere reaches the origin rewritten, and the response comes back', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'HEAD', 'DELETE', 'OPTIONS'),
        fc.domain(),
        fc.integer({ min: 1, max: 65535 }),
        fc.webPath(),
        fc.array(fc.tuple(token, fieldValue), { maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        async (method, host, port, path, fields, cuts) => {
          const dialer = remoteDialer(origin)
          const sock = new FakeSocket()
          const done = session(dialer, sock)
          const head = [`${method} http://${host}:${port}${path} HTTP/1.1`, `Host: ${host}`, ...fields.map(([k, v]) => `${k}: ${v}`), 'Connection: close', '', ''].join('\r\n')
          const bytes = Buffer.from(head, 'latin1')
          await feed(sock, splitAt(bytes, cuts), false)
          expect(await until(() => sock.writableEnded || sock.destroyed)).toBe(true)
          sock.push(null)
          await done
          expect(dialer.dsts).toEqual([{ host, port }])
          const parsed = parseRequestHead(bytes)
          if (parsed.status !== 'done') throw new Error('test built a bad request')
          const t = parseTarget(parsed.head.method, parsed.head.target)
          if ('error' in t || t.kind !== 'forward') throw new Error('test built a bad target')
          expect((dialer.streams[0] as FakeRemote).data.toString('latin1')).toBe(buildOriginRequest(parsed.head, t).toString('latin1'))
          expect(sock.output.toString('latin1')).toMatch(method === 'HEAD' ? /^HTTP\/1\.1 200 OK\r\n/ : /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/)
        },
      ),
      { numRuns: 150 },
    )
  })

  it('CONNECT split anywhere dials host:port and forwards the bytes pipelined behind the head', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.domain(), fc.ipV4()), fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 60 }), fc.array(fc.nat(), { maxLength: 8 }), async (host, port, early, cuts) => {
        const dialer = remoteDialer()
        const sock = new FakeSocket()
        const done = session(dialer, sock)
        const bytes = Buffer.concat([Buffer.from(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`), Buffer.from(early)])
        await feed(sock, splitAt(bytes, cuts), false)
        await done // resolves once the tunnel is handed over to the pipe
        expect(dialer.dsts).toEqual([{ host, port }])
        expect(sock.output.toString('latin1')).toBe('HTTP/1.1 200 Connection Established\r\n\r\n')
        expect(await until(() => (dialer.streams[0] as FakeRemote).data.length >= early.length)).toBe(true)
        expect((dialer.streams[0] as FakeRemote).data.toString('hex')).toBe(Buffer.from(early).toString('hex'))
        sock.destroy()
      }),
      { numRuns: 250 },
    )
  })

  it('random bytes in random chunks: run() resolves and any answer is an HTTP response', async () => {
    const piece = fc.constantFrom('GET ', 'CONNECT ', 'http://', 'a.b:80', '/', ' HTTP/1.1', '\r\n', '\n', 'Host: x', 'Content-Length: 5', 'Transfer-Encoding: chunked', ':', ' ', '\0', '0\r\n\r\n', 'fail.invalid')
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.array(piece, { maxLength: 20 }).map((p) => Buffer.from(p.join(''), 'latin1'))),
        fc.array(fc.nat(), { maxLength: 8 }),
        async (bytes, cuts) => {
          const dialer = remoteDialer(origin)
          const sock = new FakeSocket()
          const done = session(dialer, sock)
          await feed(sock, splitAt(bytes, cuts), true)
          let settled = false
          void done.then(() => (settled = true))
          expect(await until(() => settled, 200)).toBe(true)
          const out = sock.output.toString('latin1')
          if (out !== '') expect(out).toMatch(/^HTTP\/1\.1 \d{3} /)
          sock.destroy()
        },
      ),
      { numRuns: 400 },
    )
  })
})
