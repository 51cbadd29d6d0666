/**
 * The route-table parsers line by line: iproute2 (remote-routes-ip.ts), net-tools/busybox and BSD
 * tables (remote-routes-table.ts), and the defensive helpers (remote-routes-lines.ts). Whole
 * outputs of real bastions: remote-routes.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { formatCidr } from '../../src/config/cidr'
import { parseIpRoutes } from '../../src/config/remote-routes-ip'
import { parseIp, parseNet, safeName, splitLines, type RemoteRoute } from '../../src/config/remote-routes-lines'
import { parseRouteTables } from '../../src/config/remote-routes-table'
import { parseBastionRoutes, ROUTES_MARKER } from '../../src/config/remote-routes'

const ip = (text: string, family: 4 | 6 = 4) => parseIpRoutes(splitLines(text), family)
const table = (text: string) => parseRouteTables(splitLines(text))
const brief = (r: RemoteRoute) =>
  `${r.kind} ${formatCidr(r.net)} gw=${r.gateway ?? '-'} dev=${r.dev ?? '-'} ${r.connected ? 'connected' : 'routed'}${r.linkDown ? ' linkdown' : ''}`

describe('iproute2 lines', () => {
  it('reads type, prefix, via, dev, proto, metric, src and linkdown wherever they are on the line', () => {
    const p = ip(
      [
        'default via 203.0.113.1 dev eth0 proto dhcp src 203.0.113.10 metric 100 ',
        '10.81.0.0/24 dev eth9 proto kernel scope link src 10.81.0.1 linkdown ',
        'blackhole 10.99.0.0/16 ',
        '10.60.0.5 via 10.20.0.254 dev lan1 ',
        // busybox: doubled blanks; older iproute2 put metric before proto.
        '10.30.0.0/16 via 10.20.0.254 dev lan1  metric 50 proto static',
      ].join('\n'),
    )
    expect(p.routes.map(brief)).toEqual([
      'unicast 0.0.0.0/0 gw=203.0.113.1 dev=eth0 routed',
      'unicast 10.81.0.0/24 gw=- dev=eth9 connected linkdown',
      'blackhole 10.99.0.0/16 gw=- dev=- routed',
      'unicast 10.60.0.5/32 gw=10.20.0.254 dev=lan1 routed',
      'unicast 10.30.0.0/16 gw=10.20.0.254 dev=lan1 routed',
    ])
    expect(p.routes.map((r) => [r.proto, r.metric])).toEqual([['dhcp', 100], ['kernel', undefined], [undefined, undefined], [undefined, undefined], ['static', 50]])
    expect(p.ownAddresses).toEqual(['203.0.113.10', '10.81.0.1'])
    expect(p.ignoredLines).toBe(0)
  })

  it('multipath: the first next hop is the gateway; linkdown only when every next hop is down', () => {
    const up = ip('10.70.0.0/16 proto static metric 10 \n\tnexthop via 10.20.0.253 dev lan1 weight 1 linkdown\n\tnexthop via 10.20.0.254 dev lan2 weight 2 \n')
    expect(up.routes.map(brief)).toEqual(['unicast 10.70.0.0/16 gw=10.20.0.253 dev=lan1 routed'])
    const down = ip('10.70.0.0/16 proto static\n\tnexthop via 10.20.0.253 dev lan1 weight 1 dead linkdown\n\tnexthop via 10.20.0.254 dev lan2 weight 2 linkdown\n')
    expect(down.routes[0].linkDown).toBe(true)
    // busybox prints a multipath route without its next hops: neither attached nor with a gateway.
    expect(ip('10.70.0.0/16  metric 10 ').routes.map(brief)).toEqual(['unicast 10.70.0.0/16 gw=- dev=- routed'])
    // A nexthop line with nothing before it is not a route.
    expect(ip('\tnexthop via 10.0.0.1 dev eth0').ignoredLines).toBe(1)
  })

  it('takes `via inet6` next hops of IPv4 routes and link-local gateways of IPv6 routes', () => {
    expect(ip('10.5.0.0/16 via inet6 fe80::1 dev eth0 proto bird').routes[0].gateway).toBe('fe80::1')
    expect(ip('2001:db8:5::/64 via fe80::1 dev eth0 proto ra metric 1024 expires 1499sec pref medium', 6).routes.map(brief)).toEqual([
      'unicast 2001:db8:5::/64 gw=fe80::1 dev=eth0 routed',
    ])
  })

  it('skips lines of the other family, bad prefixes, names and unknown route types, counting them', () => {
    const p = ip(['fd00::/64 dev eth0', '10.0.0.0/33 dev eth0', 'corp-net dev eth0', 'frobnicate 10.0.0.0/8', '10.1.0.0/16 dev eth0'].join('\n'))
    expect(p.routes.map((r) => formatCidr(r.net))).toEqual(['10.1.0.0/16'])
    expect(p.ignoredLines).toBe(4)
    // Host bits set: cleared as the kernel does.
    expect(ip('10.1.2.3/16 dev eth0').routes[0].net).toEqual({ family: 4, address: '10.1.0.0', prefix: 16 })
  })

  it('strips colour (an `ip -color` alias) and refuses escape sequences in names', () => {
    const p = ip('\x1b[32m10.1.0.0/16\x1b[0m dev \x1b[34meth0\x1b[0m scope link\n10.2.0.0/16 dev eth0\x1b]0;title\x07 scope link')
    expect(p.routes.map(brief)).toEqual(['unicast 10.1.0.0/16 gw=- dev=eth0 connected'])
    expect(p.ignoredLines).toBe(1)
    expect(ip('10.3.0.0/16 dev e\u202eth0 proto b\u0430d').routes.map((r) => [r.dev, r.proto])).toEqual([[undefined, undefined]])
  })
})

describe('net-tools and busybox tables', () => {
  const NT4 = 'Kernel IP routing table\nDestination     Gateway         Genmask         Flags Metric Ref    Use Iface\n'
  it('IPv4: genmask to prefix, G for gateways, `!` and interface "*" as reject routes', () => {
    const p = table(
      NT4 +
        [
          '0.0.0.0         203.0.113.1     0.0.0.0         UG    100    0        0 eth0',
          '10.20.0.0       0.0.0.0         255.255.0.0     U     0      0        0 lan1',
          '10.97.0.0       -               255.255.0.0     !     0      -        0 -',
          '10.99.0.0       0.0.0.0         255.255.0.0     U     0      0        0 *',
          '10.5.0.0        10.20.0.1       255.0.255.0     UG    0      0        0 lan1',
        ].join('\n'),
    )
    expect(p.routes.map(brief)).toEqual([
      'unicast 0.0.0.0/0 gw=203.0.113.1 dev=eth0 routed',
      'unicast 10.20.0.0/16 gw=- dev=lan1 connected',
      'reject 10.97.0.0/16 gw=- dev=- routed',
      'reject 10.99.0.0/16 gw=- dev=- routed',
    ])
    expect(p.routes.map((r) => r.metric)).toEqual([100, 0, 0, 0])
    // A non-contiguous genmask is no prefix.
    expect(p.ignoredLines).toBe(1)
  })

  it('IPv6: /proc/net/ipv6_route rows; own addresses are `Un` /128 rows', () => {
    const p = table(
      [
        'Kernel IPv6 routing table',
        'Destination                    Next Hop                   Flag Met Ref  Use If',
        'fd00:30::/48                   fd00:20::fe                UG   50  1      0 lan1',
        'fd00:99::/48                   ::                         !n   1024 3      0 lo',
        '2001:db8:1::10/128             ::                         Un   0   2      0 eth0',
        '::/0                           ::                         !n   -1  1      0 lo',
      ].join('\n'),
    )
    expect(p.routes.map(brief)).toEqual([
      'unicast fd00:30::/48 gw=fd00:20::fe dev=lan1 routed',
      'reject fd00:99::/48 gw=- dev=lo routed',
      'local 2001:db8:1::10/128 gw=- dev=eth0 routed',
      'reject ::/0 gw=- dev=lo routed',
    ])
    expect(p.ownAddresses).toEqual(['2001:db8:1::10'])
  })

  it('rows before any header, or under a header it does not know, are not routes', () => {
    const p = table('10.20.0.0       0.0.0.0         255.255.0.0     U     0      0        0 lan1\nDestination Foo Bar\n10.0.0.0 x y z')
    expect(p.routes).toEqual([])
    expect(p.ignoredLines).toBe(2)
  })
})

describe('BSD netstat -rn', () => {
  const bsd = (rows: string[], family = 'Internet:', header = 'Destination        Gateway            Flags     Netif Expire') =>
    table(['Routing tables', '', family, header, ...rows].join('\n'))

  it('FreeBSD: CIDR networks, link#N attached, lo0 host routes are the bastion, B and R reject', () => {
    const p = bsd([
      'default            203.0.113.1        UGS      vtnet0',
      '10.20.0.0/16       link#2             U        vtnet1',
      '10.20.0.1          link#2             UHS         lo0',
      '10.40.0.0/16       10.20.0.254        UG1      vtnet1',
      '10.98.0.0/16       127.0.0.1          UGRS        lo0',
      '10.99.0.0/16       127.0.0.1          UGBS        lo0',
      '10.5.0.0&0xff00ff00 10.20.0.254       UGS      vtnet1',
    ])
    expect(p.routes.map(brief)).toEqual([
      'unicast 0.0.0.0/0 gw=203.0.113.1 dev=vtnet0 routed',
      'unicast 10.20.0.0/16 gw=- dev=vtnet1 connected',
      'local 10.20.0.1/32 gw=- dev=lo0 routed',
      'unicast 10.40.0.0/16 gw=10.20.0.254 dev=vtnet1 routed',
      'reject 10.98.0.0/16 gw=127.0.0.1 dev=lo0 routed',
      'blackhole 10.99.0.0/16 gw=127.0.0.1 dev=lo0 routed',
    ])
    expect(p.ownAddresses).toEqual(['10.20.0.1'])
    // A non-contiguous mask (&0x…) is skipped.
    expect(p.ignoredLines).toBe(1)
  })

  it('macOS: classful short networks, explicit /len, ARP entries, broadcast and multicast', () => {
    const p = bsd(
      [
        '127                127.0.0.1          UCS             0        0     lo0',
        '169.254            link#4             UCS             0        0     en0      !',
        '172.20.8/22        192.168.64.254     UGSc            0        0     en0',
        '10.44/16           10.44.0.1          UGSc            1        0   utun3',
        '192.168.64         link#4             UCS             2        0     en0      !',
        '192.168.64.7       3e:22:fb:aa:bb:cc  UHLWI           0       42     en0   1105',
        '192.168.64.5       3e:22:fb:1:2:3     UHLWI           0       12     lo0',
        '192.168.64.255     ff:ff:ff:ff:ff:ff  UHLWbI          0        4     en0      !',
        '224.0.0/4          link#4             UmCS            1        0     en0      !',
      ],
      'Internet:',
      'Destination        Gateway            Flags        Refs      Use   Netif Expire',
    )
    expect(p.routes.map((r) => `${r.kind} ${formatCidr(r.net)} ${r.dev}`)).toEqual([
      'unicast 127.0.0.0/8 lo0',
      'unicast 169.254.0.0/16 en0',
      'unicast 172.20.8.0/22 en0',
      'unicast 10.44.0.0/16 utun3',
      'unicast 192.168.64.0/24 en0',
      'neighbor 192.168.64.7/32 en0',
      'local 192.168.64.5/32 lo0',
      'broadcast 192.168.64.255/32 en0',
      'multicast 224.0.0.0/4 en0',
    ])
  })

  it('Internet6: %scope in networks and gateways; other families are skipped', () => {
    const p = table(
      [
        'Internet6:',
        'Destination                       Gateway                       Flags     Netif Expire',
        'fe80::%vtnet0/64                  link#1                        U        vtnet0',
        'default                           fe80::1%vtnet0                UG       vtnet0',
        'fd00:20::1                        link#2                        UHS         lo0',
        'Netgraph:',
        'Destination        Gateway            Flags     Netif Expire',
        'some-node          link#9             U          ng0',
      ].join('\n'),
    )
    expect(p.routes.map(brief)).toEqual([
      'unicast fe80::/64 gw=- dev=vtnet0 connected',
      'unicast ::/0 gw=fe80::1 dev=vtnet0 routed',
      'local fd00:20::1/128 gw=- dev=lo0 routed',
    ])
  })
})

describe('helpers', () => {
  it('parseIp and parseNet take literals only, canonical, scope dropped', () => {
    expect(parseIp('fe80::1%eth0')).toBe('fe80::1')
    expect(parseIp('2001:DB8::0:1')).toBe('2001:db8::1')
    for (const bad of ['10.1', '0x0a.0.0.1', '10.0.0.1/32', 'host', '[::1]', '']) expect(parseIp(bad)).toBeUndefined()
    expect(parseIp('10.0.0.1', 6)).toBeUndefined()
    expect(parseNet('fe80::%em0/64')).toEqual({ family: 6, address: 'fe80::', prefix: 64 })
    expect(parseNet('10.0.0.0/8%x')).toBeUndefined()
  })
  it('safeName lets through interface-like names only', () => {
    expect(['eth0', 'enp1s0', 'br-3f2a.100', 'wg0@if2'].map(safeName)).toEqual(['eth0', 'enp1s0', 'br-3f2a.100', 'wg0@if2'])
    expect(['', 'a b', 'e\x1b[0m', 'x'.repeat(33), 'ｅth0'].map(safeName)).toEqual([undefined, undefined, undefined, undefined, undefined])
  })
  it('SSH_CONNECTION: IPv4-mapped addresses become IPv4; malformed lines give nothing', () => {
    const conn = (line: string) =>
      parseBastionRoutes(`${ROUTES_MARKER}conn\n${line}\n${ROUTES_MARKER}ip4\n10.1.0.0/16 dev eth0\n`).sshConnection
    expect(conn('::ffff:192.0.2.7 50022 ::ffff:203.0.113.10 22')).toEqual({ client: '192.0.2.7', server: '203.0.113.10' })
    expect(conn('2001:db8::7 50022 2001:db8::10 22')).toEqual({ client: '2001:db8::7', server: '2001:db8::10' })
    expect(conn('192.0.2.7 50022 203.0.113.10')).toBeUndefined()
    expect(conn('$(reboot) 1 2 3')).toBeUndefined()
  })
})
