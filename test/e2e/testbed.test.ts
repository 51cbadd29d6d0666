// The testbed itself, without subnet-tunnel: proves that what the tunnel tests rely on is true
// (the private network is unreachable directly, the real sshd forwards, the services answer,
// keys and known_hosts behave) and gives OpenSSH's own `-L` throughput as a baseline.
import { spawn } from 'node:child_process'
import { randomBytes, createHash } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { describeRun, sleep, TESTBED_SCRIPT, run } from './lib/exec'
import { e2eDescribe, assertRoot } from './lib/guard'
import { Testbed, newTestbedName, parseTestbedEnv } from './lib/testbed'
import { curl, download, upload, concurrentGets } from './lib/traffic'

e2eDescribe('testbed (no tunnel)', () => {
  let tb: Testbed

  beforeAll(async () => {
    assertRoot()
    tb = await Testbed.up(newTestbedName('tb'))
  })
  afterAll(async () => {
    await tb?.down()
  })

  it('parses the env it prints', () => {
    const env = parseTestbedEnv("ST_NAME='x'\nST_DIR='/a b'\nST_CLIENT_NS='c'\nST_SSH_CONFIG='/s'\nST_PRIVATE_IP='1.2.3.4'\nST_BIG_FILE_SHA256='ab'\nST_HTTP_PORT='80'\nST_X='it'\\''s'\n")
    expect(env.dir).toBe('/a b')
    expect(env.httpPort).toBe(80)
    expect((env as unknown as Record<string, string>).x).toBe("it's")
    expect(() => parseTestbedEnv("ST_NAME='x'\ntouch /tmp/x\n")).toThrow(/unexpected line/)
    expect(() => parseTestbedEnv("ST_NAME='x'y'\n")).toThrow(/unexpected line/)
    expect(tb.env.privateNet).toBe('10.251.0.0/24')
    expect(tb.env.bigFileSha256).toMatch(/^[0-9a-f]{64}$/)
  })

  it('refuses a second up of the same name and keeps the first intact', async () => {
    const again = await run([TESTBED_SCRIPT, 'up', tb.name])
    expect(again.code).not.toBe(0)
    expect(again.stderr).toMatch(/exists/)
    const r = await tb.exec('bastion', ['curl', '-sS', tb.url(tb.env.privateIp)])
    expect(r.stdout).toContain('hello from the private network')
  })

  it('the private network is unreachable from the client without a tunnel (v4 and v6)', async () => {
    const [v4, v6] = await Promise.all([
      curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 2, maxTimeS: 3 }),
      curl(tb, tb.url(tb.env.privateIp6), { connectTimeoutS: 2, maxTimeS: 3 }),
    ])
    expect(v4.code, describeRun(v4)).not.toBe(0)
    expect(v6.code, describeRun(v6)).not.toBe(0)
    const fwd = await tb.exec('bastion', ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'])
    expect(fwd.stdout.split('\n').filter(Boolean)).toEqual(['0', '0'])
  })

  it('the bastion reaches every private service', async () => {
    const r4 = await tb.exec('bastion', ['curl', '-sS', tb.url(tb.env.privateIp)])
    const r6 = await tb.exec('bastion', ['curl', '-sS', tb.url(tb.env.privateIp6)])
    const alt = await tb.exec('bastion', ['curl', '-sS', tb.url(tb.env.privateAltIp6)])
    for (const r of [r4, r6, alt]) expect(r.stdout, describeRun(r)).toContain('hello from the private network')
    const echo = await tb.exec('bastion', ['socat', '-', `TCP:${tb.env.privateIp}:${tb.env.echoPort}`], { input: 'ping\n' })
    expect(echo.stdout).toBe('ping\n')
    const closed = await tb.exec('bastion', ['curl', '-sS', tb.url(tb.env.privateIp, '/', tb.env.closedPort)])
    expect(closed.code).toBe(7) // connection refused
    const iperf = await tb.exec('bastion', ['iperf3', '-c', tb.env.privateIp, '-t', '1', '-J'], { timeoutMs: 20_000 })
    expect(iperf.code, describeRun(iperf)).toBe(0)
  })

  it('the client has names for the testbed hosts and no DNS', async () => {
    const r = await tb.exec('client', ['getent', 'hosts', tb.env.privateHostname])
    expect(r.stdout).toContain(tb.env.privateIp6)
    const unknown = await tb.exec('client', ['getent', 'hosts', 'no-such-host.invalid'])
    expect(unknown.code).not.toBe(0)
    expect(unknown.ms).toBeLessThan(2_000)
  })

  it('OpenSSH through the real sshd: -L forwards, 64 MiB each way checksummed (baseline)', async () => {
    const argv = tb.nsArgv('client', ['ssh', '-F', tb.env.sshConfig, '-N', '-o', 'ExitOnForwardFailure=yes',
      '-L', `127.0.0.1:8080:${tb.env.privateIp}:80`, '-L', `127.0.0.1:8086:[${tb.env.privateIp6}]:80`, 'bastion'])
    const ssh = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    ssh.stderr.on('data', (b: Buffer) => (err += b.toString()))
    try {
      let ok = false
      for (let i = 0; i < 50 && !ok; i++) {
        ok = (await curl(tb, 'http://127.0.0.1:8080/', { maxTimeS: 2 })).stdout.includes('hello')
        if (!ok) await sleep(100)
      }
      expect(ok, err).toBe(true)
      expect((await curl(tb, 'http://127.0.0.1:8086/')).stdout).toContain('hello from the private network')
      const down = await download(tb, `http://127.0.0.1:8080${tb.env.bigFile}`)
      expect(down.sha256).toBe(tb.env.bigFileSha256)
      const file = path.join(tb.env.dir, 'upload.bin')
      const data = randomBytes(tb.env.bigFileBytes)
      writeFileSync(file, data)
      const up = await upload(tb, file, 'http://127.0.0.1:8080/upload')
      expect(up.sha256).toBe(createHash('sha256').update(data).digest('hex'))
      expect(up.bytes).toBe(data.length)
      const many = await concurrentGets(tb, '127.0.0.1', 50, 'hello from the private network', 8080)
      expect(many.failed, many.errors.join('; ')).toBe(0)
      expect(many.ok).toBe(50)
      console.log(`[baseline] OpenSSH -L: download ${down.mibps.toFixed(1)} MiB/s, upload ${up.mibps.toFixed(1)} MiB/s`)
    } finally {
      ssh.kill('SIGTERM')
    }
  })

  it('host keys and forwarding permissions behave like a real bastion', async () => {
    const ssh = (alias: string, extra: string[] = []) =>
      tb.exec('client', ['ssh', '-F', tb.env.sshConfig, '-o', 'BatchMode=yes', ...extra, alias, 'true'], { timeoutMs: 20_000 })
    const good = await ssh('bastion')
    expect(good.code, describeRun(good)).toBe(0)
    expect((await ssh('bastion6')).code).toBe(0)
    const bad = await ssh('bastion-badkey')
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/)
    const nokey = await ssh('bastion-nokey')
    expect(nokey.code).not.toBe(0)
    expect(nokey.stderr).toMatch(/host key/i)
    const badauth = await ssh('bastion-badauth')
    expect(badauth.code).not.toBe(0)
    expect(badauth.stderr).toMatch(/Permission denied/)
    // `restrict` forbids forwarding: OpenSSH reports "administratively prohibited".
    const nofwd = await tb.exec('client', ['ssh', '-F', tb.env.sshConfig, '-W', `${tb.env.privateIp}:80`, 'bastion-nofwd'], { timeoutMs: 20_000 })
    expect(nofwd.stderr).toMatch(/administratively prohibited/)
  })

  it('down removes namespaces, processes and state, and is safe to repeat', async () => {
    const other = await Testbed.up(newTestbedName('tbd'))
    const pids = [...(await other.pids('bastion')), ...(await other.pids('private'))]
    expect(pids.length).toBeGreaterThanOrEqual(3) // sshd, http server, iperf3
    await other.down()
    await other.down()
    const ns = await run(['ip', 'netns', 'list'])
    expect(ns.stdout).not.toContain(`st-${other.name}-`)
    expect(existsSync(other.env.dir)).toBe(false)
    expect(existsSync(`/etc/netns/${other.env.clientNs}`)).toBe(false)
    for (const pid of pids) expect(existsSync(`/proc/${pid}/ns/net`), `pid ${pid} still alive`).toBe(false)
  })
})
