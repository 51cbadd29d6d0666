/** The --fail-closed guard as data: its argv, its table, and the scan of leftover guards. */
import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { GUARD_TABLE_BASE, guardLeftovers, guardPlan, guardTable, isGuardTable, parseGuardRules } from '../../../src/platform/firewall/fail-closed'
import { isTunTable, tunTable } from '../../../src/platform/firewall/tun-naming'

describe('guardPlan', () => {
  it('unreachable routes for the captured networks, throw for excludes that cut into them, one rule per family as the switch', () => {
    const p = guardPlan({
      instanceId: 'ab12',
      include: [parseCidr('10.0.0.0/16'), parseCidr('fd00::/48')],
      exclude: [parseCidr('10.0.0.5/32'), parseCidr('192.168.1.0/24'), parseCidr('fd00::1/128')],
      ownerUid: 1000,
    })
    const t = String(guardTable('ab12'))
    expect(p.families).toEqual([4, 6])
    expect(p.build).toEqual([
      ['ip', '-4', 'route', 'replace', 'unreachable', '10.0.0.0/16', 'table', t],
      // 192.168.1.0/24 (this machine's LAN) is outside every captured network: no route needed.
      ['ip', '-4', 'route', 'replace', 'throw', '10.0.0.5/32', 'table', t],
      ['ip', '-6', 'route', 'replace', 'unreachable', 'fd00::/48', 'table', t],
      ['ip', '-6', 'route', 'replace', 'throw', 'fd00::1/128', 'table', t],
    ])
    expect(p.close).toEqual([
      ['ip', '-4', 'rule', 'add', 'priority', '5353', 'uidrange', '1000-1000', 'lookup', t],
      ['ip', '-6', 'rule', 'add', 'priority', '5353', 'uidrange', '1000-1000', 'lookup', t],
    ])
    expect(p.open).toEqual([
      ['ip', '-4', 'rule', 'del', 'priority', '5353', 'lookup', t],
      ['ip', '-6', 'rule', 'del', 'priority', '5353', 'lookup', t],
    ])
    expect(p.remove).toEqual([...p.open, ['ip', '-4', 'route', 'flush', 'table', t], ['ip', '-6', 'route', 'flush', 'table', t]])
  })

  it('the table is the id\'s, outside the tun backend\'s range (neither scan touches the other\'s objects); bad ids never reach argv', () => {
    expect(guardTable('ab12')).toBe(guardTable('ab12'))
    expect(guardTable('ab12')).not.toBe(guardTable('ab13'))
    expect(isGuardTable(guardTable('ab12'))).toBe(true)
    expect(isTunTable(guardTable('ab12'))).toBe(false)
    expect(isGuardTable(tunTable('ab12'))).toBe(false)
    expect(() => guardTable('AB;rm')).toThrow(/invalid instance id/)
  })

  it('leftovers: closed guards at priority 5353 in the guard range that no live instance owns', () => {
    const own = guardTable('live1')
    const dead = guardTable('dead1')
    const v4 = `0:\tfrom all lookup local\n5353:\tfrom all lookup ${own}\n5353:\tfrom all uidrange 1000-1000 lookup ${dead}\n5353:\tfrom all lookup 1234\n5354:\tfrom all lookup ${GUARD_TABLE_BASE + 7}\n32766:\tfrom all lookup main\n`
    expect(parseGuardRules([v4, undefined])).toEqual([{ family: 4, table: own }, { family: 4, table: dead }])
    const left = guardLeftovers([v4, `5353:\tfrom all lookup ${dead}\n`], new Set([own]))
    expect(left.map((l) => l.revert)).toEqual([
      [['ip', '-4', 'rule', 'del', 'priority', '5353', 'lookup', String(dead)], ['ip', '-4', 'route', 'flush', 'table', String(dead)]],
      [['ip', '-6', 'rule', 'del', 'priority', '5353', 'lookup', String(dead)], ['ip', '-6', 'route', 'flush', 'table', String(dead)]],
    ])
  })
})
