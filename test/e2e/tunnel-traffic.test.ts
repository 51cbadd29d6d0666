// The real CLI, the real sshd, real clients: traffic through the tunnel (one tunnel, shared by
// the tests of this file, method auto). Throughput and time-to-first-request are printed with
// console.log ("[measure] …") so a run's figures can be quoted.
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { concurrentGets, curl, download, firstSuccess, upload } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('tunnel traffic (real CLI, real sshd)', () => {
  let tb: Testbed
  let tunnel: Tunnel | undefined

  useTestbed('tt', (t) => (tb = t))

  /** The shared tunnel; started by the first test that needs it (so -t filters still work). */
  async function up(): Promise<Tunnel> {
    if (tunnel && !tunnel.hasExited) return tunnel
    tunnel = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet, tb.env.privateNet6])
    return tunnel
  }

  it('without the tunnel, the private HTTP server is unreachable', async () => {
    expect(tunnel).toBeUndefined()
    const r = await curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 2, maxTimeS: 3 })
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.stdout).not.toContain(HELLO)
  })

  it('comes up (auth + rules) and serves the first request; prints its up line once', async () => {
    const t = await up()
    const first = await firstSuccess(tb, tb.url(tb.env.privateIp), 10_000)
    console.log(`[measure] start → up line ${t.msToUp} ms; start → first successful request ${first - t.startedAt} ms`)
    console.log(`[measure] up line: ${t.upLine.trim()}`)
    expect(t.upLine).toMatch(/\b(nat|nft)\b/)
    expect(t.upLine).toContain(tb.env.privateNet)
    expect(t.stderr.split('\n').filter((l) => /\bup:/.test(l))).toHaveLength(1)
    expect(await leftoverRules(tb), 'rules must be in place while up').not.toHaveLength(0)
  })

  it('HTTP over IPv4 through the tunnel', async () => {
    await up()
    const r = await curl(tb, tb.url(tb.env.privateIp))
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stdout).toContain(HELLO)
  })

  it('HTTP over IPv6 through the tunnel', async () => {
    await up()
    const r = await curl(tb, tb.url(tb.env.privateIp6), { extra: ['-6'] })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stdout).toContain(HELLO)
  })

  it('64 MiB download arrives intact', async () => {
    await up()
    const d = await download(tb, tb.url(tb.env.privateIp, tb.env.bigFile))
    console.log(`[measure] download 64 MiB: ${d.ms} ms, ${d.mibps.toFixed(1)} MiB/s`)
    expect(d.bytes).toBe(tb.env.bigFileBytes)
    expect(d.sha256).toBe(tb.env.bigFileSha256)
  })

  it('64 MiB upload arrives intact', async () => {
    await up()
    const data = randomBytes(tb.env.bigFileBytes)
    const file = path.join(tb.env.dir, 'upload.bin')
    writeFileSync(file, data)
    const u = await upload(tb, file, tb.url(tb.env.privateIp, '/upload'))
    console.log(`[measure] upload 64 MiB: ${u.ms} ms, ${u.mibps.toFixed(1)} MiB/s`)
    expect(u.bytes).toBe(data.length)
    expect(u.sha256).toBe(createHash('sha256').update(data).digest('hex'))
  })

  it('200 concurrent connections all complete', async () => {
    await up()
    const r = await concurrentGets(tb, tb.env.privateIp, 200, HELLO)
    console.log(`[measure] 200 concurrent GETs: ${r.ms} ms`)
    expect(r.errors).toEqual([])
    expect(r.ok).toBe(200)
  })

  it('a refused destination is reset fast, not left hanging', async () => {
    await up()
    const r = await curl(tb, tb.url(tb.env.privateIp, '/', tb.env.closedPort), { maxTimeS: 10 })
    // 7 = connection refused, 56 = connection reset (the local connect succeeds, then the
    // failed channel open resets it). 28 (timeout) or 52 (empty reply: FIN, no RST) are bugs.
    expect([7, 56], describeRun(r)).toContain(r.code)
    expect(r.ms).toBeLessThan(2_000)
    // The tunnel survives a failed channel.
    expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
  })

  it('SIGTERM: exits 0, removes every rule, leaves no process behind', async () => {
    const t = await up()
    const exit = await t.stop('SIGTERM')
    expect(exit, t.stderr).toEqual({ code: 0, signal: null })
    expect(await leftoverRules(tb)).toEqual([])
    expect(await tb.waitForNoPids('client')).toEqual([])
    const r = await curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 2, maxTimeS: 3 })
    expect(r.code).not.toBe(0)
  })
})
