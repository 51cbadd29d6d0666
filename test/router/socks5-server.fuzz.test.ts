/**
 * Fuzzing the SOCKS5 front-end's stream handling (src/router/socks5-server.ts) with chosen
 * chunk boundaries (see fuzz-streams.ts): a handshake split anywhere — with or without
 * username/password, with early data pipelined behind the request — dials the same destination
 * and delivers the early data; random bytes in random chunks never throw and always end in a
 * closed or dialled connection.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import { Socks5Server } from '../../src/router/socks5-server'
import { Cmd, Method, buildGreeting, buildRequest, buildUserPass, formatIpv6, parseIpv6 } from '../../src/router/socks5-wire'
import type { FakeDialer } from '../fakes/fake-dialer'
import { type FakeRemote, FakeSocket, feed, remoteDialer, splitAt, until } from './fuzz-streams'

const host = fc.oneof(fc.ipV4(), fc.ipV6().map((s) => formatIpv6(parseIpv6(s)!)), fc.domain())
const auth = { username: 'alice', password: 'pa:ss wörd' }

function server(dialer: FakeDialer, withAuth: boolean): Socks5Server {
  return new Socks5Server({ port: 0, dialer, access: new AccessPolicy(), log: memoryLogger(), ...(withAuth && { auth }) })
}

describe('Socks5Server stream handling under fuzzing', () => {
  it('a valid handshake split anywhere dials the same destination and delivers early data', async () => {
    await fc.assert(
      fc.asyncProperty(host, fc.integer({ min: 0, max: 65535 }), fc.boolean(), fc.uint8Array({ maxLength: 40 }), fc.array(fc.nat(), { maxLength: 8 }), async (h, port, withAuth, early, cuts) => {
        const dialer = remoteDialer()
        const sock = new FakeSocket()
        server(dialer, withAuth).handleSocket(sock.asSocket())
        const bytes = Buffer.concat([
          buildGreeting(withAuth ? [Method.NONE, Method.USERPASS] : [Method.NONE]),
          ...(withAuth ? [buildUserPass(auth.username, auth.password)] : []),
          buildRequest(Cmd.CONNECT, h, port),
          Buffer.from(early),
        ])
        await feed(sock, splitAt(bytes, cuts), false)
        expect(dialer.dsts).toEqual([{ host: h, port }])
        const want = Buffer.concat([Buffer.from([5, withAuth ? 2 : 0]), ...(withAuth ? [Buffer.from([1, 0])] : []), Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])])
        expect(await until(() => sock.output.length >= want.length)).toBe(true)
        expect(sock.output.toString('hex')).toBe(want.toString('hex'))
        expect(await until(() => (dialer.streams[0] as FakeRemote).data.length >= early.length)).toBe(true)
        expect((dialer.streams[0] as FakeRemote).data.toString('hex')).toBe(Buffer.from(early).toString('hex'))
        sock.destroy()
      }),
      { numRuns: 300 },
    )
  })

  it('random bytes in random chunks never throw; the client is closed or (rarely) dialled', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
          // SOCKS5-looking prefixes reach the later stages.
          fc.tuple(fc.constantFrom(buildGreeting([0]), buildGreeting([2]), Buffer.from([5, 1, 0, 5, 1, 0])), fc.uint8Array({ maxLength: 80 })).map(([a, b]) => Buffer.concat([a, Buffer.from(b)])),
        ),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        fc.boolean(),
        async (bytes, cuts, withAuth, end) => {
          const dialer = remoteDialer()
          const sock = new FakeSocket()
          server(dialer, withAuth).handleSocket(sock.asSocket())
          await feed(sock, splitAt(bytes, cuts), end)
          if (end) expect(sock.writableEnded || sock.destroyed || dialer.dialed.length > 0).toBe(true)
          // Whatever was answered starts like a SOCKS5 reply (method selection or REP).
          if (sock.output.length > 0) expect(sock.output[0] === 5 || (withAuth && sock.output[0] === 1)).toBe(true)
          sock.destroy()
        },
      ),
      { numRuns: 500 },
    )
  })
})
