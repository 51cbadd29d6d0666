// Everyday use beyond the transparent tunnel, against the real sshd: SOCKS5 and HTTP proxies
// (without root and without subnets), -L and -R forwards, exec mode, -f + status, the audit
// log, and two bastions at once.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { cmdlineOf, remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, sleep } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { NOBODY, makeUnprivilegedHome } from './lib/unprivileged'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('proxies, forwards, exec, background and status (real CLI, real sshd)', () => {
  let tb: Testbed
  let userDir: string

  useTestbed('tf', (t) => (tb = t), {
    setUp: (tb) => {
      // An unprivileged user's copy of the key and config: proxies must work without root.
      userDir = makeUnprivilegedHome(tb, 'st-e2e-fe-').dir
    },
    tearDown: () => {
      if (userDir) fs.rmSync(userDir, { recursive: true, force: true })
    },
  })

  it('-D as an unprivileged user with no subnets: names resolve remotely, IPv6, refused → "connection refused"', async () => {
    const t = await Tunnel.start(tb, ['-F', path.join(userDir, 'ssh_config'), '-r', 'bastion', '-D', '11080'], {
      wrap: NOBODY,
      env: { HOME: userDir },
    })
    try {
      expect(t.upLine).toMatch(/socks5 127\.0\.0\.1:11080/)
      // (The openssh engine's master is a child too; a privileged helper is not.)
      expect(t.descendants().filter((p) => /helper-main/.test(cmdlineOf(p))), 'no privileged helper without subnets').toEqual([])
      const byName = await curl(tb, `http://${tb.env.dnsName}/`, { extra: ['--socks5-hostname', '127.0.0.1:11080'] })
      expect(byName.stdout, describeRun(byName)).toContain(HELLO)
      const v6 = await curl(tb, tb.url(tb.env.privateIp6), { extra: ['--socks5-hostname', '127.0.0.1:11080'] })
      expect(v6.stdout, describeRun(v6)).toContain(HELLO)
      const refused = await curl(tb, tb.url(tb.env.privateIp, '/', 81), { extra: ['--socks5', '127.0.0.1:11080'] })
      expect(refused.code).not.toBe(0)
      // RFC 1928 REP 5 = connection refused; curl 7.88 prints the code, newer curls the words.
      expect(refused.stderr.toLowerCase()).toMatch(/refused|\(5\)/)
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
  })

  it('-D with --proxy-auth, and the HTTP proxy (plain, CONNECT, 502 on refused)', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '-D', '11081', '--http-proxy', '18080'], {
      env: { SUBNET_TUNNEL_PROXY_AUTH: 'alice:s3cret' },
    })
    try {
      const noAuth = await curl(tb, tb.url(tb.env.privateIp), { extra: ['--socks5', '127.0.0.1:11081'] })
      expect(noAuth.code).not.toBe(0)
      const auth = await curl(tb, tb.url(tb.env.privateIp), { extra: ['--socks5', 'alice:s3cret@127.0.0.1:11081'] })
      expect(auth.stdout, describeRun(auth)).toContain(HELLO)
      const plain = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-x', 'http://alice:s3cret@127.0.0.1:18080'] })
      expect(plain.stdout, describeRun(plain)).toContain(HELLO)
      const tunnel = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-p', '-x', 'http://alice:s3cret@127.0.0.1:18080'] })
      expect(tunnel.stdout, describeRun(tunnel)).toContain(HELLO)
      const missing = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-x', 'http://127.0.0.1:18080', '-o', '/dev/null', '-w', '%{http_code}'] })
      expect(missing.stdout).toBe('407')
      const bad = await curl(tb, tb.url(tb.env.privateIp, '/', 81), { extra: ['-x', 'http://alice:s3cret@127.0.0.1:18080', '-w', '\n%{http_code}'] })
      expect(bad.stdout).toMatch(/refused/i)
      expect(bad.stdout.trim().split('\n').pop()).toBe('502')
      // The password never appears in our output.
      expect(t.stderr).not.toContain('s3cret')
    } finally {
      await t.stop()
    }
  })

  it('-L and -R together in one process', async () => {
    // A service on the client's loopback that -R publishes on the bastion.
    const server = spawn('ip', ['netns', 'exec', tb.ns('client'), 'python3', '-m', 'http.server', '--bind', '127.0.0.1', '18999', '--directory', userDir], {
      stdio: 'ignore',
    })
    try {
      await sleep(500)
      const t = await Tunnel.start(tb, [...remoteArgs(tb), '-N', '-L', `18088:${tb.env.privateIp}:80`, '-R', '127.0.0.1:19099:127.0.0.1:18999'])
      try {
        const l = await curl(tb, 'http://127.0.0.1:18088/')
        expect(l.stdout, describeRun(l)).toContain(HELLO)
        const r = await tb.exec('bastion', ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:19099/ssh_config'])
        expect(r.stdout, describeRun(r)).toContain('IdentitiesOnly yes')
      } finally {
        await t.stop()
      }
    } finally {
      server.kill()
    }
  })

  it('exec: runs the command with the tunnel up, returns its exit code, leaves nothing behind', async () => {
    const ok = await runCli(tb, [...remoteArgs(tb), tb.env.privateNet, 'exec', '--', 'curl', '-sS', '--max-time', '5', tb.url(tb.env.privateIp)])
    expect(ok.code, describeRun(ok)).toBe(0)
    expect(ok.stdout).toContain(HELLO)
    const seven = await runCli(tb, [...remoteArgs(tb), tb.env.privateNet, 'exec', '--', 'sh', '-c', 'exit 7'])
    expect(seven.code, describeRun(seven)).toBe(7)
    const missing = await runCli(tb, [...remoteArgs(tb), '-D', '11083', 'exec', '--', 'no-such-command-here'])
    expect(missing.code).toBe(127)
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('-f goes to the background once up; status --json lists it; SIGTERM stops it cleanly', async () => {
    const pidfile = path.join(userDir, 'st.pid')
    const t0 = Date.now()
    const bg = await runCli(tb, [...remoteArgs(tb), '-f', '--pidfile', pidfile, '-D', '11082', tb.env.privateNet])
    expect(bg.code, describeRun(bg)).toBe(0)
    expect(bg.stderr).toMatch(/up:/)
    expect(Date.now() - t0).toBeLessThan(15_000)
    const pid = Number(fs.readFileSync(pidfile, 'utf8'))
    try {
      const web = await curl(tb, tb.url(tb.env.privateIp))
      expect(web.stdout, describeRun(web)).toContain(HELLO)
      const st = await runCli(tb, ['status', '--json'])
      expect(st.code, describeRun(st)).toBe(0)
      const list = JSON.parse(st.stdout) as { pid: number; remotes: { state: string }[]; subnets: string[]; proxies: unknown[] }[]
      const me = list.find((i) => i.pid === pid)
      expect(me, st.stdout).toBeDefined()
      expect(me!.remotes[0].state).toBe('up')
      expect(me!.subnets).toEqual([tb.env.privateNet])
      expect(me!.proxies).toHaveLength(1)
      const human = await runCli(tb, ['status'])
      expect(human.stdout).toContain(tb.env.privateNet)
    } finally {
      process.kill(pid, 'SIGTERM')
    }
    for (let i = 0; i < 50 && fs.existsSync(`/proc/${pid}`); i++) await sleep(100)
    expect(fs.existsSync(pidfile)).toBe(false)
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('--audit-log: one JSON line per connection with the local process, mode 0600; --audit-dns adds queries', async () => {
    const log = path.join(userDir, 'audit.jsonl')
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--audit-log', log, '--dns', '--audit-dns', tb.env.privateNet])
    try {
      // A client that stays connected for a second (a throttled download): the process lookup
      // runs while its socket exists; a client that exits within milliseconds may be missed.
      const r = await curl(tb, tb.url(tb.env.privateIp, '/big.bin'), { extra: ['--limit-rate', '8M', '-o', '/dev/null'], maxTimeS: 1 })
      expect(r.code, describeRun(r)).toBe(28) // curl's "timed out", by design
      const d = await tb.exec('client', ['dig', '+short', '+time=3', '+tries=1', tb.env.dnsName, '@127.0.0.1'])
      expect(d.stdout.trim(), describeRun(d)).toBe(tb.env.privateIp)
    } finally {
      await t.stop()
    }
    expect(fs.statSync(log).mode & 0o777).toBe(0o600)
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    const line = lines.find((l) => l.type === 'conn' && String(l.dst).startsWith(`${tb.env.privateIp}:80`))
    expect(line, JSON.stringify(lines)).toBeDefined()
    expect(line.frontEnd).toBe('transparent')
    expect(line.process?.command ?? '').toMatch(/curl/)
    expect(line.bytesDown).toBeGreaterThan(0)
    const dns = lines.find((l) => l.type === 'dns' && l.qname === tb.env.dnsName)
    expect(dns, JSON.stringify(lines)).toMatchObject({ route: 'tunnel', qtype: 'A', rcode: 'NOERROR' })
  })

  it('two bastions in one process: each subnet through its own SSH connection', async () => {
    // bastion (IPv4) and bastion6 (IPv6) are two separate SSH connections.
    const t = await Tunnel.start(tb, [...remoteArgs(tb), `${tb.env.privateIp}/32`, `${tb.env.privateAltIp}/32=bastion6`])
    try {
      expect(t.upLine).toMatch(/bastion|10\.250\.0\.1/)
      const [a, b] = await Promise.all([curl(tb, tb.url(tb.env.privateIp)), curl(tb, tb.url(tb.env.privateAltIp))])
      expect(a.stdout, describeRun(a)).toContain(HELLO)
      expect(b.stdout, describeRun(b)).toContain(HELLO)
      const st = await runCli(tb, ['status', '--json'])
      const me = (JSON.parse(st.stdout) as { pid: number; remotes: { name: string; state: string }[] }[]).find((i) => i.pid === t.pid)
      expect(me!.remotes.map((r) => `${r.name}:${r.state}`).sort()).toEqual(['bastion6:up', 'bastion:up'])
    } finally {
      await t.stop()
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})

