// Slowloris against the SOCKS5 proxy, end to end with the real CLI under a small open-files
// limit: hundreds of clients that trickle their credentials one byte at a time must not take the
// tunnel down. What must hold: the proxy stops taking them at the descriptor reserve (the rest
// are reset at once, and the refusal is logged a bounded number of times), the transparent path
// and a client that authenticated before the flood keep working throughout, every attacker the
// proxy took is closed at the 10 s handshake deadline however it trickles, and afterwards the
// proxy serves new clients again.
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun, sleep } from './lib/exec'
import { HoldClient } from './lib/faults'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import { fdCount, JsonProc, killAllProcs, nofile } from './lib/load'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
/** Open-files limit of the tunnel: 256, so its reserve is the minimum, 64 descriptors. */
const NOFILE = 256
const ATTACKERS = 400
const SOCKS_PORT = 11090
/** The proxy's handshake deadline (SOCKS_HANDSHAKE_MS) plus slack for a loaded 2-core machine. */
const DEADLINE_BOUND_MS = 13_000

e2eDescribe('slowloris against the SOCKS5 proxy (real CLI, real sshd, real kernel)', () => {
  let tb: Testbed
  const holds: HoldClient[] = []

  useTestbed('ts', (t) => (tb = t), {
    tearDown: async (tb) => {
      await Promise.all(holds.map((h) => h.stop()))
      killAllProcs()
    },
  })

  it(`${ATTACKERS} trickling clients under --nofile=${NOFILE}: the tunnel and an authenticated client keep working`, async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '-D', String(SOCKS_PORT), tb.env.privateNet], {
      wrap: ['prlimit', `--nofile=${NOFILE}:${NOFILE}`],
      env: { SUBNET_TUNNEL_PROXY_AUTH: 'alice:s3cret' },
    })
    const flood = JsonProc.start(tb, 'client', 'socks-slowloris.js', [
      '127.0.0.1', SOCKS_PORT, 'alice', 's3cret', tb.env.privateIp, tb.env.echoPort, ATTACKERS, 500, 2_000,
    ])
    try {
      expect(nofile(t.pid).soft).toBe(NOFILE)
      await flood.next('held', 10_000)
      const started = Date.now()
      const f = await flood.next('flood', 15_000)
      console.log(`[measure] ${ATTACKERS} slowloris clients against -D under --nofile=${NOFILE}: ${JSON.stringify(f)}, tunnel fds ${fdCount(t.pid)}`)
      // The proxy took some, then stopped at the reserve and reset the rest at once.
      expect(f.admitted as number, JSON.stringify(f)).toBeGreaterThan(20)
      expect(f.refused as number, JSON.stringify(f)).toBeGreaterThan(0)
      expect(f.pending, JSON.stringify(f)).toBe(0)
      const fds = fdCount(t.pid)

      // While they hold what they got: the transparent path serves a page and 40 more connections,
      expect(Date.now() - started, 'still within the attackers\' handshake deadline').toBeLessThan(8_000)
      const page = await curl(tb, tb.url(tb.env.privateIp))
      expect(page.stdout, describeRun(page) + t.stderr).toContain(HELLO)
      const h = HoldClient.start(tb, tb.env.privateIp, tb.env.echoPort, 40, { settleMs: 10_000 })
      holds.push(h)
      expect((await h.settled).echoed, t.stderr).toBe(40)
      // and the client that authenticated before the flood still echoes.
      flood.send('ping 1')
      expect((await flood.next('pong-1', 10_000)).ok).toBe(true)
      await h.stop()
      // (the reserve, 64 descriptors, stayed free: a few may be in use by the SSH side meanwhile)
      expect(fds, 'descriptors in use during the flood').toBeLessThanOrEqual(NOFILE - 64 + 8)

      // Every attacker the proxy took is closed at the handshake deadline, though each still trickles.
      await sleep(Math.max(0, started + DEADLINE_BOUND_MS - Date.now()))
      flood.send('summary 1')
      const s = await flood.next('summary-1', 10_000)
      console.log(`[measure] ${DEADLINE_BOUND_MS} ms after the flood began: ${JSON.stringify(s)}`)
      expect(s.open, JSON.stringify(s)).toBe(0)
      expect(s.longestMs as number, JSON.stringify(s)).toBeLessThan(DEADLINE_BOUND_MS)
      expect(s.longestMs as number, JSON.stringify(s)).toBeGreaterThan(9_000)

      // The flood is over: a new authenticated client gets through the proxy again.
      const viaProxy = await curl(tb, tb.url(tb.env.privateIp), { extra: ['--socks5', `alice:s3cret@127.0.0.1:${SOCKS_PORT}`] })
      expect(viaProxy.stdout, describeRun(viaProxy) + t.stderr).toContain(HELLO)
      flood.send('ping 2')
      expect((await flood.next('pong-2', 10_000)).ok).toBe(true)

      // The refusals were explained, but not once per connection.
      const lines = t.stderr.split('\n').filter((l) => /socks5: refused/.test(l))
      console.log(`[measure] refusal warnings on stderr:\n${lines.join('\n')}`)
      expect(lines.length, t.stderr).toBeGreaterThanOrEqual(1)
      expect(lines.length, t.stderr).toBeLessThanOrEqual(5)
      expect(lines[0]).toMatch(/file descriptors left/)
      expect(t.hasExited, t.stderr).toBe(false)
    } finally {
      await flood.stop()
      expect((await t.stop()).code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})
