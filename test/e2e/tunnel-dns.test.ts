// DNS through the tunnel, end to end: the real CLI with --dns, the real sshd, dnsmasq as the
// private network's resolver (behind a 127.0.0.53 stub on the bastion, like systemd-resolved),
// and the client's own dnsmasq on 127.0.0.1 that knows only an "outside" name. glibc (getent),
// dig and curl are the clients. Addresses and names: see scripts/testbed.
import { readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel, waitGone } from './lib/cli'
import { describeRun, sleep, type RunResult } from './lib/exec'
import { leftoverRules, waitForNoRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
/** Source ports for dns-burst (below the default ephemeral range 32768–60999). */
const BURST_BASE_PORT = 20_000
/** A fixed source port for the restart test, used by nothing else. */
const RESTART_PORT = 21_000

/** dig in the client namespace: one try, short timeout, so a broken path fails fast. */
function dig(tb: Testbed, args: readonly string[], timeS = 2): Promise<RunResult> {
  return tb.exec('client', ['dig', `+time=${timeS}`, '+tries=1', ...args], { timeoutMs: (timeS + 5) * 1000 })
}

/** getent (glibc: nsswitch `files dns`, resolv.conf → 127.0.0.1) in the client namespace. */
function getent(tb: Testbed, db: string, name: string): Promise<RunResult> {
  return tb.exec('client', ['getent', db, name], { timeoutMs: 10_000 })
}

/** A position in a dnsmasq log, to read only what was logged after it. */
function logMark(file: string): number {
  return statSync(file).size
}

/** dnsmasq's lines for queries of `name` logged after `mark` (`query[A] name from …`, `auth[A] …`). */
function queriesSince(file: string, mark: number, name: string): string[] {
  const text = readFileSync(file).subarray(mark).toString()
  const re = new RegExp(`\\b(query|auth)\\[[A-Z0-9]+\\] ${name.replace(/\./g, '\\.')} from `)
  return text.split('\n').filter((l) => re.test(l))
}

/** Polls the tunnel's stderr for a -v line naming `name` with the given route. */
async function waitLogLine(t: Tunnel, name: string, route: 'tunnel' | 'cache' | 'local', withinMs = 2_000): Promise<string | undefined> {
  const re = new RegExp(`${name.replace(/\./g, '\\.')}\\b.*\\b${route}\\b`)
  const deadline = Date.now() + withinMs
  for (;;) {
    const line = t.stderr.split('\n').find((l) => re.test(l))
    if (line !== undefined || Date.now() >= deadline) return line
    await sleep(50)
  }
}

interface BurstResult {
  ok: number
  failed: number
  errors: string[]
  ms: number
}

/**
 * lib/dns-burst.js in the client namespace: n queries at once over UDP, and n pipelined over one
 * TCP connection. The UDP sources are fixed ports below the ephemeral range, so no earlier dig of
 * this file (with a conntrack entry from an earlier tunnel) shares a 5-tuple with them.
 */
async function dnsBurst(tb: Testbed, server: string, n: number, cases: object[]): Promise<BurstResult> {
  const script = path.join(__dirname, 'lib', 'dns-burst.js')
  const r = await tb.exec('client', [process.execPath, script, server, String(n), JSON.stringify(cases), 'both', String(BURST_BASE_PORT)], { timeoutMs: 60_000 })
  try {
    return JSON.parse(r.stdout) as BurstResult
  } catch {
    throw new Error(`dns-burst: ${describeRun(r)}`)
  }
}

/** The records of the answer section in dig's full output (`name TTL IN TYPE data`). */
function answers(out: string, type: string): string[] {
  return out.split('\n').filter((l) => !l.startsWith(';') && new RegExp(`\\sIN\\s+${type}\\s`).test(l))
}

e2eDescribe('DNS through the tunnel (real CLI, sshd, dnsmasq)', () => {
  let tb: Testbed
  let shared: Tunnel | undefined

  useTestbed('td', (t) => (tb = t), {
    clientDns: true,
  })

  const nets = (): string[] => [tb.env.privateNet, tb.env.privateNet6]

  /** `-v --dns` with default detection, shared by the tests that do not need other options. */
  async function dnsTunnel(): Promise<Tunnel> {
    if (shared && !shared.hasExited) return shared
    shared = await Tunnel.start(tb, ['-v', ...remoteArgs(tb), '--dns', ...nets()])
    return shared
  }

  async function stopShared(): Promise<void> {
    if (!shared || shared.hasExited) return
    const exit = await shared.stop('SIGTERM')
    expect(exit.code, shared.stderr).toBe(0)
  }

  it('without the tunnel: private names do not resolve, the unreachable resolver times out', async () => {
    expect(shared).toBeUndefined()
    const r = await getent(tb, 'hosts', tb.env.dnsName)
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.ms, 'NXDOMAIN from the client resolver, not a timeout').toBeLessThan(2_000)
    // The client's own resolver works (so the failure above is "unknown name").
    const outside = await getent(tb, 'ahostsv4', tb.env.outsideName)
    expect(outside.stdout, describeRun(outside)).toContain(tb.env.outsideIp)
    const [v4, v6, direct] = await Promise.all([
      dig(tb, [`@${tb.env.unreachableNs}`, tb.env.dnsName, '+short'], 1),
      dig(tb, [`@${tb.env.unreachableNs6}`, tb.env.dnsName, 'AAAA', '+short'], 1),
      dig(tb, [`@${tb.env.dnsIp}`, tb.env.dnsName, '+short'], 1),
    ])
    for (const d of [v4, v6, direct]) {
      expect(d.code, describeRun(d)).not.toBe(0)
      expect(d.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')), 'no answer').toEqual([])
      expect(d.stdout).toMatch(/timed out|no servers could be reached|unreachable/i)
    }
  })

  it('--dns: getent, dig A/AAAA/TCP answered by the bastion’s resolver over the channel; names + TCP tunnel together', async () => {
    const t = await dnsTunnel()
    const bastionMark = logMark(tb.env.dnsLogBastion)
    const clientMark = logMark(tb.env.dnsLogClient)
    const v4 = await getent(tb, 'ahostsv4', tb.env.dnsName)
    expect(v4.code, describeRun(v4)).toBe(0)
    expect(v4.stdout).toContain(tb.env.privateIp)
    const v6 = await getent(tb, 'ahostsv6', tb.env.dnsName)
    expect(v6.stdout, describeRun(v6)).toContain(tb.env.privateIp6)
    const hosts = await getent(tb, 'hosts', tb.env.dnsName)
    expect(hosts.code, describeRun(hosts)).toBe(0)
    const a = await dig(tb, [tb.env.dnsName, '+short'])
    expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
    const aaaa = await dig(tb, [tb.env.dnsName, 'AAAA', '+short'])
    expect(aaaa.stdout.trim(), describeRun(aaaa)).toBe(tb.env.privateIp6)
    const tcp = await dig(tb, [tb.env.dnsName, '+tcp', '+short'])
    expect(tcp.stdout.trim(), describeRun(tcp)).toBe(tb.env.privateIp)
    // Default detection: the bastion's resolv.conf names its 127.0.0.53 stub, reached over a channel.
    expect(queriesSince(tb.env.dnsLogBastion, bastionMark, tb.env.dnsName).length).toBeGreaterThan(0)
    expect(queriesSince(tb.env.dnsLogClient, clientMark, tb.env.dnsName), 'the client resolver was bypassed').toEqual([])
    // A name and the TCP tunnel together, as an application uses them.
    const page = await curl(tb, `http://${tb.env.dnsName}/`)
    expect(page.stdout, describeRun(page)).toContain(HELLO)
    expect(await waitLogLine(t, tb.env.dnsName, 'tunnel'), t.stderr).toBeDefined()
  })

  it('--dns: an unknown private name is NXDOMAIN with the zone’s SOA, fast', async () => {
    await dnsTunnel()
    const r = await dig(tb, [`nope.${tb.env.dnsDomain}`])
    expect(r.stdout, describeRun(r)).toMatch(/status: NXDOMAIN/)
    expect(answers(r.stdout, 'SOA').join('\n')).toContain(tb.env.dnsDomain)
    expect(r.ms).toBeLessThan(2_000)
  })

  it('--dns: a large answer is truncated over UDP (TC), then complete over TCP', async () => {
    await dnsTunnel()
    const name = tb.env.dnsBigName
    // dig retries over TCP by itself when it sees TC: that retry goes through our TCP side.
    for (const opts of [['+bufsize=512'], ['+noedns'], []]) {
      const r = await dig(tb, [name, 'TXT', ...opts])
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stdout, `dig ${opts.join(' ')}`).toContain(';; Truncated, retrying in TCP mode')
      expect(answers(r.stdout, 'TXT'), describeRun(r)).toHaveLength(8)
    }
    // +ignore: no TCP retry, so the truncated UDP answer itself is shown, with the tc flag.
    const udp = await dig(tb, [name, 'TXT', '+ignore', '+noedns'])
    expect(udp.stdout, describeRun(udp)).toMatch(/;; flags:[^;]*\btc\b/)
    expect(udp.stdout.length).toBeLessThan(2_000)
    const tcp = await dig(tb, [name, 'TXT', '+tcp'])
    expect(tcp.stdout).not.toContain('Truncated')
    expect(tcp.stdout, describeRun(tcp)).not.toMatch(/;; flags:[^;]*\btc\b/)
    const records = answers(tcp.stdout, 'TXT')
    expect(records).toHaveLength(8)
    for (let i = 1; i <= 8; i++) expect(records.join('\n')).toContain(`record-${i}-`)
  })

  it('--dns: the second identical query comes from the cache, with a decremented TTL (also NXDOMAIN)', async () => {
    const t = await dnsTunnel()
    const name = tb.env.dnsAltName // not asked by any earlier test
    const negative = `cache-miss.${tb.env.dnsDomain}`
    const mark = logMark(tb.env.dnsLogPrivate)
    const first = await dig(tb, [name, '+noall', '+answer'])
    const [, ttl1] = answers(first.stdout, 'A')[0]?.split(/\s+/) ?? []
    expect(Number(ttl1), describeRun(first)).toBeGreaterThan(0)
    const neg1 = await dig(tb, [negative])
    expect(neg1.stdout, describeRun(neg1)).toMatch(/status: NXDOMAIN/)
    await sleep(1_100)
    const second = await dig(tb, [name, '+noall', '+answer'])
    const rec = answers(second.stdout, 'A')[0]?.split(/\s+/) ?? []
    expect(rec[4], describeRun(second)).toBe(tb.env.privateAltIp)
    expect(Number(rec[1])).toBeLessThan(Number(ttl1))
    const neg2 = await dig(tb, [negative])
    expect(neg2.stdout, describeRun(neg2)).toMatch(/status: NXDOMAIN/)
    expect(await waitLogLine(t, name, 'cache'), t.stderr).toBeDefined()
    expect(await waitLogLine(t, negative, 'cache'), t.stderr).toBeDefined()
    // The stub on the bastion does not cache: each query that left the client reached the server.
    expect(queriesSince(tb.env.dnsLogPrivate, mark, name)).toHaveLength(1)
    expect(queriesSince(tb.env.dnsLogPrivate, mark, negative)).toHaveLength(1)
  })

  it('SIGTERM: exit 0 and no rule left, DNS capture included; the client resolver answers again', async () => {
    await dnsTunnel()
    expect(await leftoverRules(tb)).not.toHaveLength(0)
    await stopShared()
    expect(await leftoverRules(tb)).toEqual([])
    const r = await dig(tb, [tb.env.outsideName, '+short'])
    expect(r.stdout.trim(), describeRun(r)).toBe(tb.env.outsideIp)
    const gone = await dig(tb, [tb.env.dnsName])
    expect(gone.stdout, describeRun(gone)).toMatch(/status: NXDOMAIN/)
  })

  it('--ns-hosts: a resolver unreachable without the tunnel answers (IPv4 and IPv6 nameserver, A and AAAA); 127.0.0.1 is not captured', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--ns-hosts', `${tb.env.unreachableNs},${tb.env.unreachableNs6}`, ...nets()])
    try {
      const a = await dig(tb, [`@${tb.env.unreachableNs}`, tb.env.dnsName, '+short'])
      expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
      const aaaa = await dig(tb, [`@${tb.env.unreachableNs6}`, tb.env.dnsName, 'AAAA', '+short'])
      expect(aaaa.stdout.trim(), describeRun(aaaa)).toBe(tb.env.privateIp6)
      const tcp6 = await dig(tb, [`@${tb.env.unreachableNs6}`, tb.env.dnsName, '+tcp', '+short'])
      expect(tcp6.stdout.trim(), describeRun(tcp6)).toBe(tb.env.privateIp)
      const local = await dig(tb, ['@127.0.0.1', tb.env.dnsName])
      expect(local.stdout, describeRun(local)).toMatch(/status: NXDOMAIN/)
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('only IPv4 subnets: AAAA answers are empty (IPv6-first clients do not stall); --dns-all-families keeps them', async () => {
    await stopShared()
    for (const keep of [false, true]) {
      const t = await Tunnel.start(tb, ['-v', ...remoteArgs(tb), '--dns', ...(keep ? ['--dns-all-families'] : []), tb.env.privateNet])
      try {
        const a = await dig(tb, [tb.env.dnsName, '+short'])
        expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
        const aaaa = await dig(tb, [tb.env.dnsName, 'AAAA'])
        expect(aaaa.stdout, describeRun(aaaa)).toMatch(/status: NOERROR/)
        const answers = aaaa.stdout.split('\n').filter((l) => /\sIN\s+AAAA\s/.test(l) && !l.startsWith(';'))
        expect(answers.map((l) => l.split(/\s+/).pop()), describeRun(aaaa)).toEqual(keep ? [tb.env.privateIp6] : [])
        if (!keep) expect(t.stderr).toMatch(/no IPv6 subnet is tunnelled: AAAA queries through the tunnel get an empty answer/)
      } finally {
        expect((await t.stop('SIGTERM')).code, t.stderr).toBe(0)
      }
    }
  })

  it('split DNS (--dns-domain): private names through the tunnel, others to the client’s resolver, no loop', async () => {
    const t = await Tunnel.start(tb, ['-v', ...remoteArgs(tb), '--dns', '--dns-domain', tb.env.dnsDomain, ...nets()])
    try {
      const privMark = logMark(tb.env.dnsLogPrivate)
      const clientMark = logMark(tb.env.dnsLogClient)
      const inside = await dig(tb, [tb.env.dnsName, '+short'])
      expect(inside.stdout.trim(), describeRun(inside)).toBe(tb.env.privateIp)
      const outside = await dig(tb, [tb.env.outsideName, '+short'])
      expect(outside.stdout.trim(), describeRun(outside)).toBe(tb.env.outsideIp)
      expect(outside.ms, 'no loop, no extra delay').toBeLessThan(1_000)
      const viaGlibc = await getent(tb, 'ahostsv4', tb.env.outsideName)
      expect(viaGlibc.stdout, describeRun(viaGlibc)).toContain(tb.env.outsideIp)
      expect(queriesSince(tb.env.dnsLogPrivate, privMark, tb.env.dnsName).length).toBeGreaterThan(0)
      expect(queriesSince(tb.env.dnsLogPrivate, privMark, tb.env.outsideName), 'outside name leaked into the tunnel').toEqual([])
      expect(queriesSince(tb.env.dnsLogClient, clientMark, tb.env.dnsName), 'private name leaked to the local resolver').toEqual([])
      // dig's one query, plus glibc's A and AAAA: a loop would multiply these.
      const seen = queriesSince(tb.env.dnsLogClient, clientMark, tb.env.outsideName)
      expect(seen.length).toBeGreaterThan(0)
      expect(seen.length, seen.join('\n')).toBeLessThanOrEqual(3)
      expect(await waitLogLine(t, tb.env.dnsName, 'tunnel'), t.stderr).toBeDefined()
      expect(await waitLogLine(t, tb.env.outsideName, 'local'), t.stderr).toBeDefined()
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('a bastion account that cannot exec: --dns refuses with a hint at --to-ns; with --to-ns it works', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-noexec'), '--dns', ...nets()])
    expect(r.timedOut, describeRun(r)).toBe(false)
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.code, describeRun(r)).not.toBeNull()
    expect(r.stderr, describeRun(r)).toContain('--to-ns')
    expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m)
    expect(await leftoverRules(tb)).toEqual([])
    const t = await Tunnel.start(tb, [...remoteArgs(tb, 'bastion-noexec'), '--dns', '--to-ns', tb.env.dnsIp, ...nets()])
    try {
      const a = await dig(tb, [tb.env.dnsName, '+short'])
      expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
      const page = await curl(tb, `http://${tb.env.dnsName}/`)
      expect(page.stdout, describeRun(page)).toContain(HELLO)
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('--no-dns-cache: 200 simultaneous UDP queries and 200 pipelined on one TCP connection each get their own answer', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--dns', '--no-dns-cache', ...nets()])
    try {
      const { dnsName, dnsAltName, dnsDomain } = tb.env
      const cases = [
        { name: dnsName, type: 'A', rcode: 'NOERROR', data: tb.env.privateIp },
        { name: dnsName, type: 'AAAA', rcode: 'NOERROR', data: tb.env.privateIp6 },
        { name: dnsAltName, type: 'A', rcode: 'NOERROR', data: tb.env.privateAltIp },
        { name: `burst-%d.${dnsDomain}`, type: 'A', rcode: 'NXDOMAIN' },
      ]
      const r = await dnsBurst(tb, '127.0.0.1', 200, cases)
      console.log(`[measure] 400 DNS queries (200 UDP at once + 200 pipelined TCP), uncached: ${r.ms} ms`)
      expect(r.failed, r.errors.join('\n')).toBe(0)
      expect(r.ok).toBe(400)
      // No cache: a repeated query reaches the private server again.
      const mark = logMark(tb.env.dnsLogPrivate)
      for (let i = 0; i < 2; i++) {
        const a = await dig(tb, [dnsAltName, '+short'])
        expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateAltIp)
      }
      expect(queriesSince(tb.env.dnsLogPrivate, mark, dnsAltName)).toHaveLength(2)
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
  })

  it('the SSH connection drops: DNS answers again once the tunnel has reconnected', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=2', '--dns', '--no-dns-cache', ...nets()])
    try {
      const before = await dig(tb, [tb.env.dnsName, '+short'])
      expect(before.stdout.trim(), describeRun(before)).toBe(tb.env.privateIp)
      // Kill the sshd processes serving sessions, not the listener (nor the bastion's resolver stub).
      const listener = Number(readFileSync(path.join(tb.env.dir, 'sshd.pid'), 'utf8'))
      const sessions = (await tb.pids('bastion')).filter((pid) => {
        try {
          return pid !== listener && /^sshd/.test(readFileSync(`/proc/${pid}/comm`, 'utf8'))
        } catch {
          return false
        }
      })
      expect(sessions.length).toBeGreaterThan(0)
      for (const pid of sessions) process.kill(pid, 'SIGKILL')
      const killedAt = Date.now()
      const deadline = killedAt + 30_000
      let last: RunResult | undefined
      while (Date.now() < deadline) {
        last = await dig(tb, [`${tb.env.dnsName}`, '+short'], 1)
        if (last.stdout.trim() === tb.env.privateIp) break
        await sleep(200)
      }
      expect(last?.stdout.trim(), last && describeRun(last)).toBe(tb.env.privateIp)
      console.log(`[measure] SSH session killed → DNS answers again after ${Date.now() - killedAt} ms`)
      expect(t.stderr).toMatch(/connection lost/)
      expect(t.hasExited).toBe(false)
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('a restarted tunnel still captures a client source port used with the previous instance (stale conntrack)', async () => {
    // The nat redirect is decided on a flow's first packet and kept in conntrack (UDP: 30 s and
    // more): a query from the same source port to the same nameserver, sent to the new instance,
    // must not follow the old instance's mapping to its dead listener port.
    const src = ['-b', `127.0.0.1#${RESTART_PORT}`]
    const first = await Tunnel.start(tb, [...remoteArgs(tb), '--dns', ...nets()])
    try {
      const a = await dig(tb, [...src, tb.env.dnsName, '+short'])
      expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
    } finally {
      await first.stop('SIGTERM')
    }
    const second = await Tunnel.start(tb, [...remoteArgs(tb), '--dns', ...nets()])
    try {
      const b = await dig(tb, [...src, tb.env.dnsName, '+short'])
      expect(b.stdout.trim(), describeRun(b)).toBe(tb.env.privateIp)
    } finally {
      await second.stop('SIGTERM')
    }
  })

  it('kill -9 of the main process: every rule, DNS capture included, is gone within 2 s', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--dns', ...nets()])
    const a = await dig(tb, [tb.env.dnsName, '+short'])
    expect(a.stdout.trim(), describeRun(a)).toBe(tb.env.privateIp)
    const kids = t.descendants()
    expect(await leftoverRules(tb)).not.toHaveLength(0)
    process.kill(t.pid, 'SIGKILL')
    expect(await waitForNoRules(tb, 2_000)).toEqual([])
    expect(await waitGone(kids, 2_000), 'the helper exits too').toEqual([])
    // Nothing captures port 53 any more: the client's own resolver answers directly.
    const r = await dig(tb, [tb.env.outsideName, '+short'])
    expect(r.stdout.trim(), describeRun(r)).toBe(tb.env.outsideIp)
  })
})
