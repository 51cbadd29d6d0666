/**
 * The rules of chooseAutoNets (src/config/auto-nets.ts) one by one, on small iproute2 outputs:
 * where we reach the bastion (dialled, NAT, jump host), this machine's networks, merging,
 * limits and the excludes it returns. Whole real outputs: remote-routes.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { chooseAutoNets, describeRoute, type AutoNetsInput } from '../../src/config/auto-nets'
import { formatCidr, parseCidr } from '../../src/config/cidr'
import { parseBastionRoutes, ROUTES_MARKER } from '../../src/config/remote-routes'

/** A bastion that printed these `ip -4 route` lines (and this SSH_CONNECTION). */
function bastion(lines: string[], sshConnection?: string) {
  const conn = sshConnection === undefined ? [] : [`${ROUTES_MARKER}conn`, sshConnection]
  return parseBastionRoutes([...conn, `${ROUTES_MARKER}ip4`, ...lines, `${ROUTES_MARKER}end`].join('\n'))
}

function choose(input: Omit<AutoNetsInput, 'localNetworks' | 'bastionAddresses'> & { local?: string[]; dialled?: string[] }) {
  const c = chooseAutoNets({ ...input, bastionAddresses: input.dialled ?? [], localNetworks: (input.local ?? []).map(parseCidr) })
  return {
    chosen: c.chosen.map((a) => formatCidr(a.net)),
    dropped: c.dropped.map((d) => `${formatCidr(d.net)} ${d.reason}`),
    excludes: c.excludes.map((e) => `${formatCidr(e.net)} ${e.reason}`),
    linkAddresses: c.linkAddresses,
  }
}

// A cloud bastion: one interface in a VPC subnet, reached at a public address through 1:1 NAT.
const CLOUD = ['default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.5 metric 100', '10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5', '10.1.0.0/16 via 10.0.0.1 dev eth0']

describe('where we reach the bastion', () => {
  it('the attached network holding the address we dial is the link to us', () => {
    const r = choose({ routes: bastion(CLOUD), dialled: ['10.0.0.5'] })
    expect(r.chosen).toEqual(['10.1.0.0/16'])
    expect(r.dropped).toEqual(['0.0.0.0/0 default', '10.0.0.0/24 link-to-us'])
  })

  it('behind a NAT (we dial another address than the bastion sees) its subnet is tunnelled', () => {
    const r = choose({ routes: bastion(CLOUD, '198.51.100.20 50022 10.0.0.5 22'), dialled: ['203.0.113.7', 'name.example'] })
    expect(r.chosen).toEqual(['10.0.0.0/24', '10.1.0.0/16'])
    expect(r.linkAddresses).toEqual(['203.0.113.7'])
  })

  it('through a jump host (nothing dialled) the address SSH_CONNECTION names stands in', () => {
    const r = choose({ routes: bastion(CLOUD, '10.0.0.9 50022 10.0.0.5 22') })
    expect(r.chosen).toEqual(['10.1.0.0/16'])
    expect(r.linkAddresses).toEqual(['10.0.0.5'])
    // With neither, nothing is the link.
    expect(choose({ routes: bastion(CLOUD) }).chosen).toEqual(['10.0.0.0/24', '10.1.0.0/16'])
  })

  it('a routed network holding the link is kept, with the link excluded; routes inside the link are dropped', () => {
    const r = choose({
      routes: bastion(['10.0.0.0/8 via 10.9.0.1 dev eth0', '10.9.0.0/24 dev eth0 scope link src 10.9.0.5', '10.9.0.1 dev eth0 scope link']),
      dialled: ['10.9.0.5'],
    })
    expect(r.chosen).toEqual(['10.0.0.0/8'])
    expect(r.dropped).toEqual(['10.9.0.0/24 link-to-us', '10.9.0.1/32 link-to-us'])
    expect(r.excludes).toEqual(['10.9.0.0/24 link-to-us'])
  })

  it('a dialled address inside a routed network only (a host route to it) is excluded as a host', () => {
    const r = choose({ routes: bastion(['10.0.0.0/8 via 10.9.0.1 dev eth0']), dialled: ['::ffff:10.2.3.4'] })
    expect(r.chosen).toEqual(['10.0.0.0/8'])
    expect(r.excludes).toEqual(['10.2.3.4/32 link-to-us'])
  })
})

describe("this machine's networks", () => {
  it('a network inside one of ours is dropped; one holding ours is kept with ours excluded', () => {
    const r = choose({
      routes: bastion(['192.168.1.0/24 via 10.0.0.1 dev eth0', '192.168.0.0/16 via 10.0.0.1 dev eth0', '172.16.9.0/24 via 10.0.0.1 dev eth0']),
      local: ['192.168.1.0/24', '172.16.0.0/12', '192.168.1.0/25'],
    })
    expect(r.chosen).toEqual(['192.168.0.0/16'])
    expect(r.dropped).toEqual(['192.168.1.0/24 local-network', '172.16.9.0/24 local-network'])
    // 192.168.1.0/25 lies inside the 192.168.1.0/24 exclude already.
    expect(r.excludes).toEqual(['192.168.1.0/24 local-network'])
  })
})

describe('what is never tunnelled', () => {
  it('the default route, in any disguise, and anything broader than the minimum prefix', () => {
    const routes = bastion(['default via 10.0.0.1 dev eth0', '0.0.0.0/1 via 10.0.0.1 dev eth0', '128.0.0.0/1 via 10.0.0.1 dev eth0', '10.0.0.0/7 via 10.0.0.1 dev eth0', '10.0.0.0/8 via 10.0.0.1 dev eth0'])
    expect(choose({ routes }).chosen).toEqual(['10.0.0.0/8'])
    expect(choose({ routes, minPrefix: 9 }).chosen).toEqual([])
    expect(choose({ routes, minPrefix: 1 }).chosen).toEqual(['0.0.0.0/1', '128.0.0.0/1'])
  })

  it('reserved, loopback, link-local and multicast ranges, whatever the route type says', () => {
    const r = choose({ routes: bastion(['0.1.0.0/16 dev eth0', '127.5.0.0/16 dev lo', '169.254.9.0/24 dev eth0', '239.1.0.0/16 dev eth0', '240.0.0.0/8 dev eth0', '10.0.0.0/8 dev eth0']) })
    expect(r.dropped).toEqual(['0.1.0.0/16 reserved', '127.5.0.0/16 loopback', '169.254.9.0/24 link-local', '239.1.0.0/16 multicast', '240.0.0.0/8 reserved'])
    expect(r.chosen).toEqual(['10.0.0.0/8'])
  })
})

describe('merging', () => {
  it('one route per network, the first listed wins; networks inside a chosen one are covered', () => {
    const routes = bastion(['10.30.0.0/16 via 10.0.0.1 dev eth0 metric 50', '10.30.7.0/24 via 10.0.0.2 dev eth0', '10.30.0.0/16 via 10.0.0.3 dev eth0 metric 100', '10.31.0.0/16 via 10.0.0.1 dev eth0'])
    const c = chooseAutoNets({ routes, bastionAddresses: [], localNetworks: [] })
    expect(c.chosen.map((a) => describeRoute(a.route))).toEqual(['10.30.0.0/16 via 10.0.0.1 dev eth0 metric 50', '10.31.0.0/16 via 10.0.0.1 dev eth0'])
    expect(c.dropped.map((d) => `${formatCidr(d.net)} ${d.reason}: ${d.detail}`)).toEqual([
      '10.30.7.0/24 covered: inside 10.30.0.0/16 (line 2)',
      '10.30.0.0/16 duplicate: also on line 2',
    ])
  })

  it('at most maxNets networks, the rest dropped as limit; IPv4 and IPv6 both kept', () => {
    const lines = Array.from({ length: 5 }, (_, i) => `10.${i}.0.0/16 via 10.255.0.1 dev eth0`)
    const routes = parseBastionRoutes([`${ROUTES_MARKER}ip4`, ...lines, `${ROUTES_MARKER}ip6`, 'fd00:1::/48 via fd00::1 dev eth0'].join('\n'))
    const r = choose({ routes, maxNets: 3 })
    expect(r.chosen).toEqual(['10.0.0.0/16', '10.1.0.0/16', '10.2.0.0/16'])
    expect(r.dropped).toEqual(['10.3.0.0/16 limit', '10.4.0.0/16 limit', 'fd00:1::/48 limit'])
    expect(choose({ routes }).chosen).toHaveLength(6)
  })
})

describe('describeRoute', () => {
  it('names type, network, next hop, device, protocol, metric and linkdown, from parsed values only', () => {
    const routes = bastion(['blackhole 10.99.0.0/16', '10.81.0.0/24 dev eth9 proto kernel scope link src 10.81.0.1 linkdown', '10.2.0.0/16 via 10.0.0.1 dev eth0 proto bird metric 32'])
    expect(routes.routes.map(describeRoute)).toEqual([
      'blackhole 10.99.0.0/16',
      '10.81.0.0/24 dev eth9 proto kernel linkdown',
      '10.2.0.0/16 via 10.0.0.1 dev eth0 proto bird metric 32',
    ])
  })
})
