// Routing what the user means (issue 16), end to end with the real CLI and sshd: --auto-nets
// (the bastion's routes, read over an exec channel), and the account that cannot exec. The
// testbed's bastion gets two more private networks here, inside its namespaces: one attached
// (10.252.0.0/24, a second link to the private host) and one routed (10.253.0.0/24 via the
// private host), so its routing table has connected, gateway, link-to-us and default routes.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, sleep, type RunResult } from './lib/exec'
import { leftoverRules, tunObjects } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
const ATTACHED = { net: '10.252.0.0/24', bastion: '10.252.0.1', host: '10.252.0.10' }
const ROUTED = { net: '10.253.0.0/24', host: '10.253.0.10' }

/**
 * A resolver on the client's LAN (the bastion's side of the link, an address of its own): what
 * --method tun can capture, unlike the client's own 127.0.0.1. It knows only the outside name,
 * so an answer for that name comes from it and not through the tunnel (the far side REFUSEs it).
 */
const LAN_NS = '10.250.0.54'

async function startLanDns(tb: Testbed): Promise<void> {
  await must(tb, 'bastion', ['ip', 'addr', 'add', `${LAN_NS}/32`, 'dev', 'b0'])
  await must(tb, 'bastion', ['/usr/sbin/dnsmasq', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${LAN_NS}`, '--port=53',
    '--user=root', `--pid-file=${path.join(tb.env.dir, 'routes-lan.pid')}`, '--local=/#/', `--host-record=${tb.env.outsideName},${tb.env.outsideIp}`,
    `--log-facility=${path.join(tb.env.dir, 'routes-lan.log')}`, '--log-queries'])
}

/** Points the client's resolv.conf at the LAN resolver while fn runs. */
async function withLanResolver<T>(tb: Testbed, fn: () => Promise<T>): Promise<T> {
  const conf = path.join('/etc/netns', tb.env.clientNs, 'resolv.conf')
  const saved = readFileSync(conf, 'utf8')
  writeFileSync(conf, `nameserver ${LAN_NS}
options timeout:2 attempts:1
`)
  try {
    return await fn()
  } finally {
    writeFileSync(conf, saved)
  }
}

/** Runs a command in a namespace and fails loudly (set-up steps). */
async function must(tb: Testbed, role: 'client' | 'bastion' | 'private', argv: string[]): Promise<RunResult> {
  const r = await tb.exec(role, argv)
  if (r.code !== 0) throw new Error(`${role}: ${argv.join(' ')}: ${describeRun(r)}`)
  return r
}

/** The bastion's two extra networks (removed with the namespaces by the testbed's down). */
async function addNetworks(tb: Testbed): Promise<void> {
  await must(tb, 'bastion', ['ip', 'link', 'add', 'b2', 'type', 'veth', 'peer', 'name', 'p2', 'netns', tb.env.privateNs])
  await must(tb, 'bastion', ['ip', 'addr', 'add', `${ATTACHED.bastion}/24`, 'dev', 'b2'])
  await must(tb, 'bastion', ['ip', 'link', 'set', 'b2', 'up'])
  await must(tb, 'private', ['ip', 'addr', 'add', `${ATTACHED.host}/24`, 'dev', 'p2'])
  await must(tb, 'private', ['ip', 'link', 'set', 'p2', 'up'])
  await must(tb, 'private', ['ip', 'addr', 'add', `${ROUTED.host}/32`, 'dev', 'lo'])
  await must(tb, 'bastion', ['ip', 'route', 'add', ROUTED.net, 'via', tb.env.privateIp])
}

/** A name whose address changes: dnsmasq on the attached network, re-reading its hosts file on SIGHUP. */
const DYN = { domain: 'dyn.internal', name: 'app.dyn.internal', ttlS: 2 }

function hostsFile(tb: Testbed): string {
  return path.join(tb.env.dir, 'routes-dyn.hosts')
}

/** Starts the changing name's resolver; its pid is written to a file the tear-down reads. */
async function startDynDns(tb: Testbed): Promise<void> {
  writeFileSync(hostsFile(tb), `${tb.env.privateIp} ${DYN.name}\n`)
  const pidFile = path.join(tb.env.dir, 'routes-dyn.pid')
  await must(tb, 'private', ['/usr/sbin/dnsmasq', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${ATTACHED.host}`, '--port=53',
    '--user=root', `--pid-file=${pidFile}`, `--local=/${DYN.domain}/`, `--addn-hosts=${hostsFile(tb)}`, `--local-ttl=${DYN.ttlS}`,
    `--log-facility=${path.join(tb.env.dir, 'routes-dyn.log')}`, '--log-queries'])
}

/**
 * Points the name at `address`: the hosts file, then SIGHUP. dnsmasq answers DNS over TCP (what
 * the tunnel speaks) in a child forked per connection, which keeps the data of before the
 * reload for as long as the connection lasts: those children (ours) are ended too, and the
 * tunnel's resolver connects again.
 */
function moveName(tb: Testbed, address: string): void {
  writeFileSync(hostsFile(tb), `${address} ${DYN.name}\n`)
  const pid = dynPid(tb)!
  process.kill(pid, 'SIGHUP')
  let children: string[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
  } catch {
    // none
  }
  for (const c of children) {
    try {
      process.kill(Number(c), 'SIGKILL')
    } catch {
      // gone already
    }
  }
}

function dynPid(tb: Testbed, which = 'routes-dyn'): number | undefined {
  try {
    return Number(readFileSync(path.join(tb.env.dir, `${which}.pid`), 'utf8').trim()) || undefined
  } catch {
    return undefined
  }
}

/** Our kernel objects in the client namespace, as text (nft ruleset, iptables nat rules). */
async function kernelText(tb: Testbed): Promise<string> {
  const [nft, ipt, ip6t] = await Promise.all([
    tb.exec('client', ['nft', 'list', 'ruleset']),
    tb.exec('client', ['iptables', '-w', '-t', 'nat', '-S']),
    tb.exec('client', ['ip6tables', '-w', '-t', 'nat', '-S']),
  ])
  return [nft.stdout, ipt.stdout, ip6t.stdout].join('\n')
}

/** Whether the kernel capture holds a learnt address (an nft set element, an iptables rule). */
function holds(text: string, address: string): boolean {
  return text.includes(`-d ${address}/32 -p tcp`) || new RegExp(`elements = \\{[^}]*\\b${address.replace(/\./g, '\\.')}\\b`).test(text)
}

/** Polls until pred() is true or the time is up; returns the last value. */
async function waitFor<T>(get: () => Promise<T>, pred: (v: T) => boolean, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs
  for (;;) {
    const v = await get()
    if (pred(v) || Date.now() >= deadline) return v
    await sleep(250)
  }
}

/** The subnets of the up line ("subnets a, b (excluding …)"). */
function upSubnets(t: Tunnel): string[] {
  const m = /subnets ([^,(]+(?:, [^,(]+)*)/.exec(t.upLine)
  return m ? m[1]!.split(', ').map((s) => s.trim()) : []
}

e2eDescribe('routing what the user means (real CLI, sshd)', () => {
  let tb: Testbed

  useTestbed('tr', (t) => (tb = t), {
    clientDns: true,
    setUp: async (t) => {
      await addNetworks(t)
      await startDynDns(t)
      await startLanDns(t)
    },
    tearDown: (t) => {
      for (const which of ['routes-dyn', 'routes-lan']) {
        const pid = t && dynPid(t, which)
        if (!pid) continue
        try {
          process.kill(pid, 'SIGTERM')
        } catch {
          // already gone
        }
      }
    },
  })

  for (const method of ['nft', 'nat', 'tun'] as const) {
    it(`--auto-nets (${method}): tunnels both of the bastion's private networks, not the link to us`, async () => {
      // Without the tunnel neither network is reachable.
      const before = await curl(tb, `http://${ROUTED.host}/`, { connectTimeoutS: 1, maxTimeS: 2 })
      expect(before.code, describeRun(before)).not.toBe(0)
      const t = await Tunnel.start(tb, ['-v', '--method', method, ...remoteArgs(tb), '--auto-nets'])
      try {
        const nets = upSubnets(t)
        expect(nets, t.upLine).toEqual(expect.arrayContaining([tb.env.privateNet, ATTACHED.net, ROUTED.net, tb.env.privateNet6]))
        expect(nets.some((n) => n.startsWith('10.250.') || n.startsWith('fd00:250:')), t.upLine).toBe(false)
        expect(nets, 'never the default route').not.toContain('0.0.0.0/0')
        // -v says why the link to us was left out.
        expect(t.stderr).toMatch(/auto-nets: not 10\.250\.0\.0\/24 .*link to us|auto-nets: not 10\.250\.0\.0\/24 .*this machine/)
        // `subnet-tunnel routes` says where each network came from.
        const routes = await runCli(tb, ['routes'])
        expect(routes.stdout, describeRun(routes)).toMatch(new RegExp(`tunnel\\s+${ROUTED.net.replace(/\./g, '\\.')}\\s+auto-net\\s+${ROUTED.net.replace(/\./g, '\\.')} via ${tb.env.privateIp.replace(/\./g, '\\.')}`))
        expect(routes.stdout).toMatch(/direct\s+10\.250\.0\.1\/32\s+SSH transport/)
        for (const host of [tb.env.privateIp, ATTACHED.host, ROUTED.host]) {
          const r = await curl(tb, `http://${host}/`)
          expect(r.stdout, `${host}: ${describeRun(r)}\n${t.stderr}`).toContain(HELLO)
        }
      } finally {
        const exit = await t.stop()
        expect(exit.code, t.stderr).toBe(0)
      }
      expect(await leftoverRules(tb)).toEqual([])
    })
  }

  it('--auto-nets with an account that cannot exec: a clear REMOTE_EXEC error naming the alternative, nothing applied', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-noexec'), '--auto-nets'])
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.stderr, describeRun(r)).toMatch(/auto-nets/)
    expect(r.stderr, describeRun(r)).toMatch(/name the subnets/)
    expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m)
    expect(r.stderr).not.toMatch(/\bup:/)
    expect(await leftoverRules(tb)).toEqual([])
  })

  for (const method of ['nft', 'nat'] as const) {
    it(`--route-by-name (${method}), no subnet at all: db.${'corp.internal'} is reached by name, its addresses are in the capture`, async () => {
      const t = await Tunnel.start(tb, ['-v', '--method', method, ...remoteArgs(tb), '--dns-domain', tb.env.dnsDomain, '--route-by-name'])
      try {
        expect(t.upLine).toMatch(/learnt from DNS answers/)
        const r = await curl(tb, `http://${tb.env.dnsName}/`)
        expect(r.stdout, `${describeRun(r)}\n${t.stderr}`).toContain(HELLO)
        const k = await kernelText(tb)
        expect(holds(k, tb.env.privateIp), k).toBe(true)
        // A name outside the domain is answered locally and routes nothing.
        const outside = await tb.exec('client', ['getent', 'ahostsv4', tb.env.outsideName])
        expect(outside.stdout, describeRun(outside)).toContain(tb.env.outsideIp)
        expect(holds(await kernelText(tb), tb.env.outsideIp)).toBe(false)
      } finally {
        const exit = await t.stop()
        expect(exit.code, t.stderr).toBe(0)
      }
      expect(await leftoverRules(tb)).toEqual([])
    })

    it(`--route-by-name (${method}): a name whose address changes reaches the service on both, the old one leaves after its TTL`, async () => {
      moveName(tb, tb.env.privateIp)
      const grace = 1
      const t = await Tunnel.start(tb, ['-v', '--method', method, ...remoteArgs(tb), '--dns-domain', DYN.domain, '--route-by-name',
        '--route-grace', String(grace), '--to-ns', ATTACHED.host, '--no-dns-cache'])
      try {
        const first = await curl(tb, `http://${DYN.name}/`, { extra: ['-4'] })
        expect(first.stdout, `${describeRun(first)}\n${t.stderr}`).toContain(HELLO)
        expect(t.stderr).toMatch(new RegExp(`${DYN.name}: routing ${tb.env.privateIp.replace(/\./g, '\\.')} for`))
        // The name moves to the private host's other address.
        moveName(tb, tb.env.privateAltIp)
        await sleep(DYN.ttlS * 1000 + 500)
        const second = await curl(tb, `http://${DYN.name}/`, { extra: ['-4'] })
        expect(second.stdout, `${describeRun(second)}\n${t.stderr}`).toContain(HELLO)
        expect(t.stderr).toMatch(new RegExp(`${DYN.name}: routing ${tb.env.privateAltIp.replace(/\./g, '\\.')} for`))
        // Both are in the capture now, and in `subnet-tunnel routes` with the name and until when;
        // the old one leaves once its time (TTL, at least 10 s, + grace) is up.
        expect(holds(await kernelText(tb), tb.env.privateIp)).toBe(true)
        const both = await runCli(tb, ['routes'])
        for (const ip of [tb.env.privateIp, tb.env.privateAltIp]) {
          expect(both.stdout, describeRun(both)).toMatch(new RegExp(`tunnel\\s+${ip.replace(/\./g, '\\.')}/32\\s+learnt\\s+${DYN.name}, until \\d\\d:\\d\\d:\\d\\d`))
        }
        const later = await waitFor(() => kernelText(tb), (k) => !holds(k, tb.env.privateIp), 20_000)
        expect(holds(later, tb.env.privateIp), later).toBe(false)
        const gone = new RegExp(`no longer routing ${tb.env.privateIp.replace(/\./g, '\\.')}`)
        await waitFor(async () => t.stderr, (e) => gone.test(e), 3_000)
        expect(t.stderr).toMatch(gone)
        const after = await runCli(tb, ['routes'])
        expect(after.stdout, describeRun(after)).not.toContain(`${tb.env.privateIp}/32`)
        expect(after.stdout).toContain(`${tb.env.privateAltIp}/32`)
        const old = await curl(tb, `http://${tb.env.privateIp}/`, { connectTimeoutS: 1, maxTimeS: 2 })
        expect(old.code, 'the old address is no longer tunnelled').not.toBe(0)
      } finally {
        const exit = await t.stop()
        expect(exit.code, t.stderr).toBe(0)
      }
      expect(await leftoverRules(tb)).toEqual([])
    })
  }

  it('--route-by-name (tun), no subnet: a name under the domain is reached through the device, a name outside resolves on the LAN, the learnt route leaves after TTL + grace', async () => {
    moveName(tb, tb.env.privateIp)
    await withLanResolver(tb, async () => {
      const t = await Tunnel.start(tb, ['-v', '--method', 'tun', ...remoteArgs(tb), '--dns-domain', DYN.domain, '--route-by-name',
        '--route-grace', '1', '--to-ns', ATTACHED.host, '--no-dns-cache', '--ns-hosts', LAN_NS])
      try {
        const dev = /device (st[a-z0-9]+)/.exec(t.upLine)?.[1]
        expect(dev, t.upLine).toBeDefined()
        const r = await curl(tb, `http://${DYN.name}/`, { extra: ['-4'] })
        expect(r.stdout, `${describeRun(r)}\n${t.stderr}`).toContain(HELLO)
        // The kernel routes the learnt address into the device (the engine took the connection).
        const learnt = new RegExp(`^${tb.env.privateIp.replace(/\./g, '\\.')} dev ${dev}\\b`, 'm')
        expect((await tb.exec('client', ['ip', '-4', 'route', 'show', 'table', 'all'])).stdout).toMatch(learnt)
        // The split: a name outside the domain is answered by the LAN resolver, which the
        // device captures — our forwarder's own query to it is routed around the device.
        const outside = await tb.exec('client', ['getent', 'ahostsv4', tb.env.outsideName])
        expect(outside.stdout, `${describeRun(outside)}\n${t.stderr}`).toContain(tb.env.outsideIp)
        expect((await tb.exec('client', ['ip', '-4', 'rule', 'show'])).stdout).toMatch(/^5353:.* ipproto udp sport \d+ dport 53 goto 5355$/m)
        // TTL (at least 10 s) + 1 s grace: the route leaves the kernel, and the engine forgets it.
        const gone = await waitFor(async () => (await tb.exec('client', ['ip', '-4', 'route', 'show', 'table', 'all'])).stdout, (o) => !learnt.test(o), 20_000)
        expect(gone).not.toMatch(learnt)
        await waitFor(async () => t.stderr, (e) => /no longer routing/.test(e), 3_000)
        expect(t.stderr).toMatch(new RegExp(`no longer routing ${tb.env.privateIp.replace(/\./g, '\\.')}`))
      } finally {
        const exit = await t.stop()
        expect(exit.code, t.stderr).toBe(0)
      }
    })
    expect(await tunObjects(tb)).toEqual([])
  })

  it('split DNS on tun, then kill -9 of main and helper: the exemption stays until `subnet-tunnel cleanup` removes it with the rest', async () => {
    await withLanResolver(tb, async () => {
      const t = await Tunnel.start(tb, ['--method', 'tun', ...remoteArgs(tb), '--dns-domain', tb.env.dnsDomain, '--ns-hosts', LAN_NS, tb.env.privateNet])
      const inside = await tb.exec('client', ['getent', 'ahostsv4', tb.env.dnsName])
      expect(inside.stdout, `${describeRun(inside)}\n${t.stderr}`).toContain(tb.env.privateIp)
      const outside = await tb.exec('client', ['getent', 'ahostsv4', tb.env.outsideName])
      expect(outside.stdout, `${describeRun(outside)}\n${t.stderr}`).toContain(tb.env.outsideIp)
      const kids = t.descendants()
      for (const pid of kids) process.kill(pid, 'SIGSTOP')
      process.kill(t.pid, 'SIGKILL')
      for (const pid of kids) process.kill(pid, 'SIGKILL')
      await t.exited
    })
    const left = await tunObjects(tb)
    expect(left.filter((l) => /^535[35]:/.test(l)), left.join('\n')).toHaveLength(3)
    const r = await runCli(tb, ['cleanup'])
    expect(r.code, describeRun(r)).toBe(0)
    expect(await tunObjects(tb)).toEqual([])
  })

  it("--dns-domain auto: the bastion's search domain is used and shown; with --route-by-name its names work with no subnet", async () => {
    const conf = path.join('/etc/netns', tb.env.bastionNs, 'resolv.conf')
    const saved = readFileSync(conf, 'utf8')
    // Appending keeps the inode that sshd's mount namespace has bound over /etc/resolv.conf.
    appendFileSync(conf, `search ${tb.env.dnsDomain} com\n`)
    try {
      const t = await Tunnel.start(tb, ['-v', ...remoteArgs(tb), '--dns-domain', 'auto', '--route-by-name'])
      try {
        expect(t.upLine).toContain(`for ${tb.env.dnsDomain}`)
        expect(t.stderr).toMatch(/--dns-domain auto: not "com": a top-level domain/)
        const r = await curl(tb, `http://${tb.env.dnsName}/`)
        expect(r.stdout, `${describeRun(r)}\n${t.stderr}`).toContain(HELLO)
      } finally {
        const exit = await t.stop()
        expect(exit.code, t.stderr).toBe(0)
      }
    } finally {
      writeFileSync(conf, saved)
    }
  })
})
