import { describe, it, expect } from 'vitest'
import { TUN_RULE_PRIORITY as SRC_PRIORITY, TUN_TABLE_BASE as SRC_TABLE_BASE, tunTable } from '../../src/platform/firewall/tun-naming'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { TUN_RULE_PRIORITY, TUN_TABLE_BASE, tunLinks, tunRules, tunRoutes, leftoversIn } = require('../../scripts/bench-lib/leftovers.js')

// Real listings (iproute2 6.1) from a testbed client namespace while `--method tun` was up.
const LINKS_UP = [
  '1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00',
  '2: c0@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 26:b6:1e:d0:c0:51 brd ff:ff:ff:ff:ff:ff link-netns st-h12bench-bastion',
  '3: staa638816: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT group default qlen 500\\    link/none \\    alias subnet-tunnel-aa638816',
].join('\n')
const RULES_UP = '0:\tfrom all lookup local\n5354:\tfrom all lookup 1401250975\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n'
const ROUTES_UP = [
  '10.251.0.0/24 dev staa638816 table 1401250975 scope link ',
  'default via 10.250.0.1 dev c0 ',
  '10.250.0.0/24 dev c0 proto kernel scope link src 10.250.0.2 ',
  'local 10.250.0.2 dev c0 table local proto kernel scope host src 10.250.0.2 ',
].join('\n')
// After a clean stop.
const LINKS_CLEAN = LINKS_UP.split('\n').slice(0, 2).join('\n')
const RULES_CLEAN = '0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n'
const ROUTES_CLEAN = ROUTES_UP.split('\n').slice(1).join('\n')

describe('leftovers: constants follow src/platform/firewall/tun.ts', () => {
  it('same rule priority and table range', () => {
    expect(TUN_RULE_PRIORITY).toBe(SRC_PRIORITY)
    expect(TUN_TABLE_BASE).toBe(SRC_TABLE_BASE)
    expect(tunTable('aa638816')).toBe(1401250975)
  })
})

describe('tunLinks / tunRules / tunRoutes', () => {
  it('find the device, the rule and the route of a live tun instance', () => {
    expect(tunLinks(LINKS_UP)).toHaveLength(1)
    expect(tunLinks(LINKS_UP)[0]).toMatch(/^3: staa638816:/)
    expect(tunRules(RULES_UP)).toEqual(['5354:\tfrom all lookup 1401250975'])
    expect(tunRoutes(ROUTES_UP)).toEqual(['10.251.0.0/24 dev staa638816 table 1401250975 scope link'])
  })

  it('ignore veths, other rules and tables outside the range', () => {
    expect(tunLinks(LINKS_CLEAN)).toEqual([])
    expect(tunLinks('4: st0@if9: <BROADCAST> mtu 1500')).toEqual([])
    expect(tunRules('53540:\tfrom all lookup 7\n100:\tfrom all lookup 5354')).toEqual([])
    expect(tunRoutes('1.2.3.0/24 dev x table 1392508927\n1.2.3.0/24 dev x table 1409286144')).toEqual([])
    expect(tunRoutes('1.2.3.0/24 dev x table 1392508928\n1.2.3.0/24 dev x table 1409286143')).toHaveLength(2)
  })

  it('a link carrying our alias counts whatever its name', () => {
    expect(tunLinks('7: renamed0: <POINTOPOINT> mtu 1500\\    link/none \\    alias subnet-tunnel-abc')).toHaveLength(1)
  })
})

describe('leftoversIn', () => {
  it('is empty for a clean namespace', () => {
    expect(leftoversIn({ firewall: '*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n', links: LINKS_CLEAN, rules: RULES_CLEAN, routes: ROUTES_CLEAN }, /subnet-tunnel/)).toEqual([])
  })

  it('lists firewall lines of the tool and every tun object', () => {
    const left = leftoversIn({
      firewall: ':subnet-tunnel-ab12 - [0:0]\n:sshuttle-12300 - [0:0]\n',
      links: LINKS_UP, rules: RULES_UP, routes: ROUTES_UP,
    }, /subnet-tunnel/)
    expect(left).toEqual([
      'rule: :subnet-tunnel-ab12 - [0:0]',
      expect.stringMatching(/^link: 3: staa638816: <POINTOPOINT/),
      'ip rule: 5354:\tfrom all lookup 1401250975',
      'route: 10.251.0.0/24 dev staa638816 table 1401250975 scope link',
    ])
  })

  it('tolerates missing listings (a command that failed)', () => {
    expect(leftoversIn({}, /sshuttle/)).toEqual([])
  })
})
