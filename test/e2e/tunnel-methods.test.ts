// Both redirection backends against the real kernel, and excludes: each method carries HTTP
// over v4 and v6, puts its objects where it says it does, and removes them on SIGTERM.
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun } from './lib/exec'
import { dumpFirewall, leftoverRules, MARK } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('redirection methods and excludes (real CLI, real kernel)', () => {
  let tb: Testbed

  useTestbed('tm', (t) => (tb = t))

  for (const method of ['nat', 'nft'] as const) {
    it(`--method ${method}: HTTP over v4 and v6, objects in the ${method} backend, SIGTERM removes them`, async () => {
      const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', method, tb.env.privateNet, tb.env.privateNet6])
      try {
        expect(t.upLine).toMatch(new RegExp(`\\b${method}\\b`))
        const v4 = await curl(tb, tb.url(tb.env.privateIp))
        expect(v4.stdout, describeRun(v4)).toContain(HELLO)
        const v6 = await curl(tb, tb.url(tb.env.privateIp6))
        expect(v6.stdout, describeRun(v6)).toContain(HELLO)
        const fw = await dumpFirewall(tb)
        if (method === 'nat') {
          expect(fw.iptables).toMatch(MARK)
          expect(fw.ip6tables).toMatch(MARK)
        } else {
          // a table of its own, not iptables chains
          expect(fw.nft).toMatch(/^table (inet|ip|ip6) subnet-tunnel/m)
          expect(fw.iptables).not.toMatch(MARK)
        }
      } finally {
        const exit = await t.stop('SIGTERM')
        expect(exit, t.stderr).toEqual({ code: 0, signal: null })
      }
      expect(await leftoverRules(tb)).toEqual([])
    })

    it(`--method ${method}: an excluded host is not captured, its neighbour in the subnet is`, async () => {
      const excluded = `${tb.env.privateIp}/32`
      const excluded6 = `${tb.env.privateIp6}/128`
      const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', method, '-x', excluded, '-x', excluded6, tb.env.privateNet, tb.env.privateNet6])
      try {
        const rules = (await leftoverRules(tb)).join('\n')
        expect(rules, 'the exclusion is in the ruleset').toContain(tb.env.privateIp)
        expect(rules).toContain(tb.env.privateIp6)
        const [alt, alt6, ex, ex6] = await Promise.all([
          curl(tb, tb.url(tb.env.privateAltIp)),
          curl(tb, tb.url(tb.env.privateAltIp6)),
          curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 2, maxTimeS: 3 }),
          curl(tb, tb.url(tb.env.privateIp6), { connectTimeoutS: 2, maxTimeS: 3 }),
        ])
        expect(alt.stdout, describeRun(alt)).toContain(HELLO)
        expect(alt6.stdout, describeRun(alt6)).toContain(HELLO)
        // Not captured: the packets go to the bastion like without a tunnel, and die there.
        expect(ex.code, describeRun(ex)).not.toBe(0)
        expect(ex6.code, describeRun(ex6)).not.toBe(0)
      } finally {
        await t.stop('SIGTERM')
      }
      expect(await leftoverRules(tb)).toEqual([])
    })
  }
})
