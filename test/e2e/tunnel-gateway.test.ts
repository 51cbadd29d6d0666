// Gateway mode: a container namespace behind a bridge in the client (like docker0) reaches the
// private network through the client's tunnel, without any proxy settings in the container.
// Next to it, a LAN neighbour on another interface of the client: a gateway must serve only the
// interfaces or sources it was given, and its DNS interceptor must not be an open resolver.
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, run } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'

const HELLO = 'hello from the private network'

e2eDescribe('gateway mode (real CLI, a container namespace behind a bridge, a LAN neighbour)', () => {
  let tb: Testbed
  let ctr = ''
  let lan = ''

  const inNs = (ns: string, argv: string[]) => run(['ip', 'netns', 'exec', ns, ...argv], { timeoutMs: 20_000 })
  const curlFrom = (ns: string, url: string) => inNs(ns, ['curl', '-sS', '--connect-timeout', '3', '--max-time', '8', url])
  /** dig from a namespace: the answer (+short), or '' when none came. */
  const digFrom = async (ns: string, server: string, port = 53): Promise<string> => {
    const r = await inNs(ns, ['dig', `@${server}`, '-p', String(port), tb.env.dnsName, 'A', '+short', '+time=2', '+tries=1'])
    return r.code === 0 ? r.stdout.trim() : ''
  }
  /** The UDP port the tunnel process listens on for DNS at `address` in the client namespace. */
  const dnsPortOf = async (t: Tunnel, address = '0.0.0.0'): Promise<number> => {
    const ss = await tb.exec('client', ['ss', '-Hlunp'])
    const m = new RegExp(`${address.replace(/\./g, '\\.')}:(\\d+)\\s.*pid=${t.pid},`).exec(ss.stdout)
    if (!m) throw new Error(`no UDP socket of pid ${t.pid} on ${address}:\n${ss.stdout}`)
    return Number(m[1])
  }

  useTestbed('tg', (t) => (tb = t), {
    setUp: async (tb) => {
      ctr = `st-${tb.name}-ctr`
      lan = `st-${tb.name}-lan`
      const c = tb.ns('client')
      const steps: string[][] = [
        ['ip', 'netns', 'add', ctr],
        ['ip', '-n', c, 'link', 'add', 'br0', 'type', 'bridge'],
        ['ip', '-n', c, 'addr', 'add', '10.252.0.1/24', 'dev', 'br0'],
        ['ip', '-n', c, 'addr', 'add', 'fd00:252::1/64', 'dev', 'br0', 'nodad'],
        ['ip', '-n', c, 'link', 'set', 'br0', 'up'],
        ['ip', '-n', c, 'link', 'add', 'vctr', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr],
        ['ip', '-n', c, 'link', 'set', 'vctr', 'master', 'br0', 'up'],
        ['ip', '-n', ctr, 'link', 'set', 'lo', 'up'],
        ['ip', '-n', ctr, 'addr', 'add', '10.252.0.2/24', 'dev', 'eth0'],
        ['ip', '-n', ctr, 'addr', 'add', 'fd00:252::2/64', 'dev', 'eth0', 'nodad'],
        ['ip', '-n', ctr, 'link', 'set', 'eth0', 'up'],
        ['ip', '-n', ctr, 'route', 'add', 'default', 'via', '10.252.0.1'],
        ['ip', '-n', ctr, '-6', 'route', 'add', 'default', 'via', 'fd00:252::1'],
        // The LAN neighbour: another interface of the client, no credentials of its own.
        ['ip', 'netns', 'add', lan],
        ['ip', '-n', c, 'link', 'add', 'vlan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', lan],
        ['ip', '-n', c, 'addr', 'add', '10.253.0.1/24', 'dev', 'vlan'],
        ['ip', '-n', c, 'link', 'set', 'vlan', 'up'],
        ['ip', '-n', lan, 'link', 'set', 'lo', 'up'],
        ['ip', '-n', lan, 'addr', 'add', '10.253.0.2/24', 'dev', 'eth0'],
        ['ip', '-n', lan, 'link', 'set', 'eth0', 'up'],
        ['ip', '-n', lan, 'route', 'add', 'default', 'via', '10.253.0.1'],
      ]
      for (const argv of steps) {
        const r = await run(argv)
        if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`)
      }
    },
    tearDown: async () => {
      if (ctr) await run(['ip', 'netns', 'del', ctr])
      if (lan) await run(['ip', 'netns', 'del', lan])
    },
  })

  it('without --gateway the container is not captured; with --gateway-if br0 it reaches the private network (v4, v6)', async () => {
    const plain = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet])
    try {
      const r = await curlFrom(ctr, tb.url(tb.env.privateIp))
      expect(r.code, 'local-only capture does not reach the container').not.toBe(0)
    } finally {
      await plain.stop()
    }

    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--gateway-if', 'br0', tb.env.privateNet, tb.env.privateNet6])
    try {
      expect(t.upLine).toMatch(/\(gateway: br0\)/)
      const v4 = await curlFrom(ctr, tb.url(tb.env.privateIp))
      expect(v4.stdout, describeRun(v4) + t.stderr).toContain(HELLO)
      const v6 = await curlFrom(ctr, tb.url(tb.env.privateIp6))
      expect(v6.stdout, describeRun(v6) + t.stderr).toContain(HELLO)
      // The client itself still works too.
      const local = await tb.exec('client', ['curl', '-sS', '--max-time', '5', tb.url(tb.env.privateIp)])
      expect(local.stdout).toContain(HELLO)
      // A direct connection to the listener from the container is refused, not dialled.
      const port = /listener 0\.0\.0\.0:(\d+)/.exec(t.upLine)![1]
      const direct = await curlFrom(ctr, `http://10.252.0.1:${port}/`)
      expect(direct.code).not.toBe(0)
      // The LAN neighbour on the other interface is not served.
      const neighbour = await curlFrom(lan, tb.url(tb.env.privateIp))
      expect(neighbour.code, neighbour.stdout).not.toBe(0)
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
    const after = await curlFrom(ctr, tb.url(tb.env.privateIp))
    expect(after.code).not.toBe(0)
  })

  it('--gateway without a scope on a host with several interfaces is refused, naming them; nothing is left', async () => {
    const r = await runCli(tb, [...remoteArgs(tb), '--gateway', tb.env.privateNet])
    expect(r.code, describeRun(r)).toBe(2)
    expect(r.stderr, r.stderr).toMatch(/--gateway: this host has 3 network interfaces \(br0, c0, vlan\); say which to serve \[USAGE\]/)
    expect(r.stderr).toMatch(/hint: name them with --gateway-if IFACE/)
    expect(await leftoverRules(tb)).toEqual([])
  })

  for (const method of ['nat', 'nft']) {
    it(`${method}: --gateway --allow CIDR: the bridge is served, DNS too, and the gateway's own queries; the LAN neighbour is not, and nobody may query the DNS ports directly`, async () => {
      const ns = tb.env.unreachableNs
      const ns6 = tb.env.unreachableNs6
      // --dns-all-families: the AAAA answer below checks the IPv6 DNS port, while only an IPv4
      // subnet is tunnelled (which would otherwise answer AAAA empty).
      const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', method, '--gateway', '--allow', '10.252.0.0/24', '--dns', '--ns-hosts', `${ns},${ns6}`, '--dns-all-families', tb.env.privateNet])
      try {
        expect(t.upLine).toMatch(/\(gateway: every interface from 10\.252\.0\.0\/24\)/)
        // Redirected queries are answered (by the remote side's resolver)...
        expect(await digFrom(ctr, ns)).toBe(tb.env.privateIp)
        // ...the gateway's own queries to a nameserver that is not one of its addresses too, over
        // UDP and TCP (the redirect sends them to 127.0.0.1: the answer must come from there, or
        // conntrack cannot give it the nameserver's address back and dig drops it)...
        const own = await tb.exec('client', ['dig', `@${ns}`, tb.env.dnsName, '+short', '+time=2', '+tries=1'])
        expect(own.stdout.trim(), describeRun(own) + t.stderr).toBe(tb.env.privateIp)
        const ownTcp = await tb.exec('client', ['dig', `@${ns}`, tb.env.dnsName, '+tcp', '+short', '+time=2', '+tries=1'])
        expect(ownTcp.stdout.trim(), describeRun(ownTcp)).toBe(tb.env.privateIp)
        const own6 = await tb.exec('client', ['dig', `@${ns6}`, tb.env.dnsName, 'AAAA', '+short', '+time=2', '+tries=1'])
        expect(own6.stdout.trim(), describeRun(own6)).toBe(tb.env.privateIp6)
        // ...a neighbour outside the sources gets no tunnel and no DNS...
        const neighbour = await curlFrom(lan, tb.url(tb.env.privateIp))
        expect(neighbour.code, neighbour.stdout).not.toBe(0)
        expect(await digFrom(lan, ns)).toBe('')
        // ...and the interceptor's ports answer nobody directly: not the LAN, not even the bridge.
        const port = await dnsPortOf(t)
        const loopbackPort = await dnsPortOf(t, '127.0.0.1')
        expect(loopbackPort).not.toBe(port)
        for (const p of [port, loopbackPort]) {
          expect(await digFrom(lan, '10.253.0.1', p)).toBe('')
          expect(await digFrom(ctr, '10.252.0.1', p)).toBe('')
        }
        const tcp = await inNs(lan, ['dig', '@10.253.0.1', '-p', String(port), tb.env.dnsName, '+tcp', '+short', '+time=2', '+tries=1'])
        expect(tcp.stdout).not.toContain(tb.env.privateIp)
        // status says what the gateway serves.
        const st = await runCli(tb, ['status', '--json'])
        const me = (JSON.parse(st.stdout) as Array<{ pid: number; gateway?: string }>).find((s) => s.pid === t.pid)
        expect(me?.gateway).toBe('every interface from 10.252.0.0/24')
        expect((await runCli(tb, ['status'])).stdout).toMatch(/gateway {4}every interface from 10\.252\.0\.0\/24/)
      } finally {
        expect((await t.stop()).code).toBe(0)
      }
      expect(await leftoverRules(tb)).toEqual([])
    })
  }
})
