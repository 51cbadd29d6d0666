// --method tun against the real kernel: the helper creates st<id> for us with policy routes,
// the built-in engine (our userspace TCP/IP stack) carries the traffic, and every kernel
// object (link, rule, route, table) is gone after SIGTERM and after SIGKILL. Then the same
// device handed to an external engine: a stand-in speaking xjasonlyu tun2socks's command line.
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun } from './lib/exec'
import { e2eDescribe } from './lib/guard'
import { tunObjects } from './lib/firewall'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { concurrentGets, curl, download, upload } from './lib/traffic'

const HELLO = 'hello from the private network'
const FAKE_T2S = path.join(__dirname, 'lib/fake-tun2socks.js')

e2eDescribe('--method tun (real CLI, real kernel, built-in engine)', () => {
  let tb: Testbed
  let shared: Tunnel | undefined

  useTestbed('tun', (t) => (tb = t))

  /** Our objects in the client namespace (lib/firewall.ts tunObjects). */
  const leftovers = (): Promise<string[]> => tunObjects(tb)

  /** This instance's status document (other tests' instances may be listed too). */
  async function statusOf(t: Tunnel): Promise<Record<string, unknown> | undefined> {
    const st = await runCli(tb, ['status', '--json'])
    return (JSON.parse(st.stdout) as Array<Record<string, unknown>>).find((s) => s.pid === t.pid)
  }

  async function up(): Promise<Tunnel> {
    shared ??= await Tunnel.start(tb, [...remoteArgs(tb), '--method', 'tun', '--dns', '--ns-hosts', `${tb.env.unreachableNs},${tb.env.unreachableNs6}`,
      tb.env.privateNet, tb.env.privateNet6])
    return shared
  }

  it('comes up with a device, a rule and routes of its own; names the device in its up line', async () => {
    const t = await up()
    expect(t.upLine).toMatch(/\bmethod tun\b/)
    const dev = /device (st[a-z0-9]+)/.exec(t.upLine)?.[1]
    expect(dev, t.upLine).toBeDefined()
    const link = await tb.exec('client', ['ip', '-d', 'link', 'show', dev!])
    expect(link.stdout).toMatch(/tun type tun pi off/)
    expect(link.stdout).toContain(`alias subnet-tunnel-${dev!.slice(2)}`)
    const rules = (await tb.exec('client', ['ip', 'rule', 'show'])).stdout
    expect(rules).toMatch(/^5354:\s+from all lookup \d+/m)
    // the bastion keeps its normal route
    const viaBastion = await tb.exec('client', ['ip', 'route', 'get', tb.env.bastionIp])
    expect(viaBastion.stdout).not.toContain(dev!)
    const viaPrivate = await tb.exec('client', ['ip', 'route', 'get', tb.env.privateIp])
    expect(viaPrivate.stdout).toContain(dev!)
    // status names the method, the device and the engine
    expect(await statusOf(t)).toMatchObject({ method: 'tun', tun: { device: dev, engine: 'builtin' } })
  })

  it('HTTP over IPv4 and IPv6', async () => {
    await up()
    const v4 = await curl(tb, tb.url(tb.env.privateIp))
    expect(v4.stdout, describeRun(v4)).toContain(HELLO)
    const v6 = await curl(tb, tb.url(tb.env.privateIp6))
    expect(v6.stdout, describeRun(v6)).toContain(HELLO)
  })

  it('a refused destination is reset at once (the SYN is answered only after the channel opened)', async () => {
    await up()
    const r = await curl(tb, tb.url(tb.env.privateIp, '/', tb.env.closedPort), { maxTimeS: 10 })
    expect([7], describeRun(r)).toContain(r.code) // refused, not "connected then reset"
    expect(r.ms).toBeLessThan(2_000)
  })

  it('DNS: UDP and TCP (truncated answers) to a captured nameserver are answered through the tunnel', async () => {
    await up()
    const a = await tb.exec('client', ['dig', '+short', '+time=3', '+tries=1', `@${tb.env.unreachableNs}`, tb.env.dnsName])
    expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
    const aaaa = await tb.exec('client', ['dig', '+short', '+time=3', '+tries=1', `@${tb.env.unreachableNs6}`, tb.env.dnsName, 'AAAA'])
    expect(aaaa.stdout.trim(), describeRun(aaaa)).toBe(tb.env.privateIp6)
    const big = await tb.exec('client', ['dig', '+time=3', '+tries=1', `@${tb.env.unreachableNs}`, tb.env.dnsBigName, 'TXT'])
    expect(big.stdout, describeRun(big)).toMatch(/ANSWER: [1-9]/)
    expect(big.stdout).not.toMatch(/Truncated, retrying in TCP mode[\s\S]*connection refused/i)
  })

  it('64 MiB download and upload arrive intact', async () => {
    await up()
    const d = await download(tb, tb.url(tb.env.privateIp, tb.env.bigFile))
    expect(d.bytes).toBe(tb.env.bigFileBytes)
    expect(d.sha256).toBe(tb.env.bigFileSha256)
    const data = randomBytes(tb.env.bigFileBytes)
    const file = path.join(tb.env.dir, 'tun-upload.bin')
    writeFileSync(file, data)
    try {
      const u = await upload(tb, file, tb.url(tb.env.privateIp, '/upload'))
      expect(u.bytes).toBe(data.length)
      expect(u.sha256).toBe(createHash('sha256').update(data).digest('hex'))
      console.log(`tun builtin: download ${d.mibps.toFixed(1)} MiB/s, upload ${u.mibps.toFixed(1)} MiB/s`)
    } finally {
      rmSync(file, { force: true })
    }
  })

  it('200 concurrent connections all complete', async () => {
    await up()
    const r = await concurrentGets(tb, tb.env.privateIp, 200, HELLO)
    expect(r.errors.slice(0, 5)).toEqual([])
    expect(r.ok).toBe(200)
  })

  it('SIGTERM: exits 0 and leaves no link, rule or route', async () => {
    const t = await up()
    shared = undefined
    const exit = await t.stop('SIGTERM')
    expect(exit, t.stderr).toEqual({ code: 0, signal: null })
    expect(await leftovers()).toEqual([])
    const r = await curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 2, maxTimeS: 3 })
    expect(r.code).not.toBe(0)
  })

  it('SIGKILL: the helper removes the device, rules and routes on its own', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', 'tun', tb.env.privateNet, tb.env.privateNet6])
    expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
    expect((await leftovers()).length).toBeGreaterThan(0)
    await t.stop('SIGKILL')
    let left: string[] = []
    for (let i = 0; i < 50; i++) {
      left = await leftovers()
      if (left.length === 0) break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(left).toEqual([])
  })

  it('--tun-engine with a program speaking tun2socks\'s command line: data flows through our SOCKS5, a crash is restarted, stop ends it', async () => {
    chmodSync(FAKE_T2S, 0o755)
    // (with -t filters the shared tunnel may still be up: its objects are not ours to count)
    if (shared) await shared.stop('SIGTERM')
    shared = undefined
    const log = path.join(tb.env.dir, 'fake-t2s.log')
    rmSync(log, { force: true })
    rmSync(`${log}.crashed`, { force: true })
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', 'tun', '--tun-engine', FAKE_T2S, '-v', tb.env.privateNet, tb.env.privateNet6], {
      env: { FAKE_T2S_LOG: log, FAKE_T2S_CRASH_AFTER_MS: '3000' },
    })
    try {
      expect(t.upLine).toMatch(/engine fake-tun2socks\.js 2\.5\.2/)
      for (let i = 0; i < 100 && !existsSync(log); i++) await new Promise((r) => setTimeout(r, 100))
      const first = readFileSync(log, 'utf8')
      expect(first).toMatch(/^start \d+ -device tun:\/\/st[a-z0-9]+ -proxy socks5:\/\/[0-9a-f]{16}:[0-9a-f]{32}@127\.0\.0\.1:\d+ -loglevel info$/m)
      expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
      expect((await curl(tb, tb.url(tb.env.privateIp6))).stdout).toContain(HELLO)
      // the first run crashes after 3 s; the supervisor starts it again
      for (let i = 0; i < 100 && readFileSync(log, 'utf8').trim().split('\n').length < 2; i++) await new Promise((r) => setTimeout(r, 100))
      expect(existsSync(`${log}.crashed`)).toBe(true)
      const starts = readFileSync(log, 'utf8').trim().split('\n')
      expect(starts).toHaveLength(2)
      const r = await curl(tb, tb.url(tb.env.privateIp), { maxTimeS: 10 })
      expect(r.stdout, describeRun(r)).toContain(HELLO)
      expect(await statusOf(t)).toMatchObject({ method: 'tun', tun: { engine: 'fake-tun2socks.js', engineVersion: '2.5.2', restarts: 1 } })
      const pid = Number(/^start (\d+)/.exec(starts[1]!)![1])
      const exit = await t.stop('SIGTERM')
      expect(exit, t.stderr).toEqual({ code: 0, signal: null })
      expect(() => process.kill(pid, 0)).toThrow()
      expect(await leftovers()).toEqual([])
    } finally {
      if (!t.hasExited) await t.stop('SIGKILL')
    }
  })
})
