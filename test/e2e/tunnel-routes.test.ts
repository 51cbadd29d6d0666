// Routing what the user means (issue 16), end to end with the real CLI and sshd: --auto-nets
// (the bastion's routes, read over an exec channel), and the account that cannot exec. The
// testbed's bastion gets two more private networks here, inside its namespaces: one attached
// (10.252.0.0/24, a second link to the private host) and one routed (10.253.0.0/24 via the
// private host), so its routing table has connected, gateway, link-to-us and default routes.
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, type RunResult } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
const ATTACHED = { net: '10.252.0.0/24', bastion: '10.252.0.1', host: '10.252.0.10' }
const ROUTED = { net: '10.253.0.0/24', host: '10.253.0.10' }

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

/** The subnets of the up line ("subnets a, b (excluding …)"). */
function upSubnets(t: Tunnel): string[] {
  const m = /subnets ([^,(]+(?:, [^,(]+)*)/.exec(t.upLine)
  return m ? m[1]!.split(', ').map((s) => s.trim()) : []
}

e2eDescribe('routing what the user means (real CLI, sshd)', () => {
  let tb: Testbed

  useTestbed('tr', (t) => (tb = t), { clientDns: true, setUp: addNetworks })

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
})
