import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { parseRouteGet, utunPlan } from '../../../src/platform/firewall/tun-darwin'
import type { CaptureSpec } from '../../../src/platform/firewall/types'

const spec = (include: string[], exclude: string[] = [], over: Partial<CaptureSpec> = {}): CaptureSpec => ({
  instanceId: '1a2b3c4d', listenPort: 0, include: include.map(parseCidr), exclude: exclude.map(parseCidr), ...over,
})

describe('utunPlan', () => {
  it('IPv4: point-to-point address, mtu, up; one route per network; revert deletes them', () => {
    const p = utunPlan(spec(['10.0.0.0/16', '192.168.50.0/24'], ['172.16.0.9/32']), 'utun7')
    expect(p.apply).toEqual([
      ['ifconfig', 'utun7', 'inet', '169.254.77.1', '169.254.77.2', 'netmask', '255.255.255.252', 'mtu', '65532', 'up'],
      ['route', '-q', '-n', 'add', '-inet', '10.0.0.0/16', '-interface', 'utun7'],
      ['route', '-q', '-n', 'add', '-inet', '192.168.50.0/24', '-interface', 'utun7'],
    ])
    expect(p.revert).toEqual([
      ['route', '-q', '-n', 'delete', '-inet', '10.0.0.0/16', '-interface', 'utun7'],
      ['route', '-q', '-n', 'delete', '-inet', '192.168.50.0/24', '-interface', 'utun7'],
    ])
  })

  it('IPv6 and DNS host routes', () => {
    const p = utunPlan(spec(['fd00:10::/64'], [], { dns: { servers: ['10.9.0.53'], port: 5353, exemptSourcePorts: [] } }), 'utun2')
    expect(p.apply).toEqual([
      ['ifconfig', 'utun2', 'inet', '169.254.77.1', '169.254.77.2', 'netmask', '255.255.255.252', 'mtu', '65532', 'up'],
      ['ifconfig', 'utun2', 'inet6', 'fd7a:5354::1', 'prefixlen', '126'],
      ['route', '-q', '-n', 'add', '-inet6', 'fd00:10::/64', '-interface', 'utun2'],
      ['route', '-q', '-n', 'add', '-inet', '10.9.0.53/32', '-interface', 'utun2'],
    ])
  })

  it('IPv6 only: no IPv4 address, the interface still gets its mtu and comes up', () => {
    expect(utunPlan(spec(['fd00:10::/64']), 'utun2').apply.slice(0, 2)).toEqual([
      ['ifconfig', 'utun2', 'mtu', '65532', 'up'],
      ['ifconfig', 'utun2', 'inet6', 'fd7a:5354::1', 'prefixlen', '126'],
    ])
  })

  it('an exclude inside an include goes through its original next hop, before the includes', () => {
    const via = new Map([['10.0.0.5/32', { gateway: '192.168.1.1' }], ['10.0.9.0/24', { interface: 'en0' }], ['10.0.0.7/32', { interface: 'lo0' }]])
    const p = utunPlan(spec(['10.0.0.0/16'], ['10.0.0.5/32', '10.0.9.0/24', '10.0.0.7/32', '8.8.8.8/32']), 'utun4', via)
    expect(p.apply.slice(1)).toEqual([
      ['route', '-q', '-n', 'add', '-inet', '10.0.0.5/32', '192.168.1.1'],
      ['route', '-q', '-n', 'add', '-inet', '10.0.9.0/24', '-interface', 'en0'],
      ['route', '-q', '-n', 'add', '-inet', '10.0.0.0/16', '-interface', 'utun4'],
    ])
    expect(p.revert).toEqual([
      ['route', '-q', '-n', 'delete', '-inet', '10.0.0.0/16', '-interface', 'utun4'],
      ['route', '-q', '-n', 'delete', '-inet', '10.0.0.5/32', '192.168.1.1'],
      ['route', '-q', '-n', 'delete', '-inet', '10.0.9.0/24', '-interface', 'en0'],
    ])
  })

  it('refuses an overlapping exclude without a known next hop (the bastion would loop)', () => {
    expect(() => utunPlan(spec(['10.0.0.0/8'], ['10.1.2.3/32']), 'utun4')).toThrow(
      expect.objectContaining({ code: 'FW_UNSUPPORTED', message: expect.stringMatching(/10\.1\.2\.3\/32/) }),
    )
  })

  it('an exclude equal to an include removes the include; bad device names never reach argv', () => {
    const p = utunPlan(spec(['10.0.0.0/16', '10.1.0.0/16'], ['10.1.0.0/16']), 'utun1', new Map([['10.1.0.0/16', { gateway: '192.168.1.1' }]]))
    expect(p.apply.filter((a) => a[0] === 'route').map((a) => a[5])).toEqual(['10.1.0.0/16', '10.0.0.0/16'])
    expect(() => utunPlan(spec(['10.0.0.0/16']), 'en0')).toThrow()
    expect(() => utunPlan(spec(['10.0.0.0/16']), 'utun1;rm')).toThrow()
  })
})

describe('parseRouteGet', () => {
  it('gateway, on-link interface, link#N, nothing', () => {
    const viaGw = '   route to: 10.1.2.3\ndestination: default\n       mask: default\n    gateway: 192.168.1.1\n  interface: en0\n      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>\n'
    expect(parseRouteGet(viaGw)).toEqual({ gateway: '192.168.1.1' })
    expect(parseRouteGet('   route to: 192.168.1.20\ndestination: 192.168.1.0\n       mask: 255.255.255.0\n  interface: en0\n')).toEqual({ interface: 'en0' })
    expect(parseRouteGet('    gateway: link#4\n  interface: en1\n')).toEqual({ interface: 'en1' })
    expect(parseRouteGet('    gateway: fe80::1%en0\n  interface: en0\n')).toEqual({ gateway: 'fe80::1%en0' })
    expect(parseRouteGet('route: writing to routing socket: not in table\n')).toBeUndefined()
  })
})
