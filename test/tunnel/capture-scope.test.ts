import type * as os from 'node:os'
import { describe, expect, it } from 'vitest'
import { parseArgs } from '../../src/cli/args'
import { describeGatewayScope, externalInterfaces, invokingUid, planGatewayScope } from '../../src/tunnel/capture-scope'
import { parseCidr } from '../../src/config/cidr'

const addr = (address: string, internal = false): os.NetworkInterfaceInfo =>
  ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` }) as os.NetworkInterfaceInfo

describe('externalInterfaces', () => {
  it('names the interfaces with a non-loopback address, sorted', () => {
    expect(externalInterfaces({ lo: [addr('127.0.0.1', true)], wlan0: [addr('192.168.1.5')], br0: [addr('10.88.0.1')], none: [] }, () => false))
      .toEqual(['br0', 'wlan0'])
  })

  it('leaves out bridge ports (a container veth with only a link-local address): the bridge is what IP sees', () => {
    const ifaces = { br0: [addr('10.88.0.1')], veth1a2b: [addr('fe80::1')], eth0: [addr('192.168.1.5')] }
    expect(externalInterfaces(ifaces, (n) => n === 'veth1a2b')).toEqual(['br0', 'eth0'])
  })
})

describe('planGatewayScope', () => {
  const a = (over: { gateway?: boolean; gatewayInterfaces?: string[]; allow?: string[] } = {}) => ({ gateway: true, gatewayInterfaces: [], allow: [], ...over })

  it('refuses an unscoped gateway on a host with more than one interface, naming them', () => {
    let err: unknown
    try {
      planGatewayScope(a(), ['br0', 'eth0', 'wlan0'])
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({
      code: 'USAGE',
      message: '--gateway: this host has 3 network interfaces (br0, eth0, wlan0); say which to serve',
      hint: expect.stringMatching(/--gateway-if IFACE\[,IFACE\] \(e\.g\. --gateway-if br0\), or the clients with --allow CIDR/),
    })
  })

  it('one interface (or none): unscoped is allowed and means every interface', () => {
    expect(planGatewayScope(a(), ['eth0'])).toEqual({})
    expect(planGatewayScope(a(), [])).toEqual({})
    expect(describeGatewayScope({})).toBe('every interface')
  })

  it('interfaces and/or --allow sources scope it; duplicates dropped', () => {
    const s = planGatewayScope(a({ gatewayInterfaces: ['br0', 'br0', 'docker0'], allow: ['172.17.0.0/16', '172.17.0.0/16', 'fd88::/64'] }), ['br0', 'docker0', 'eth0'])
    expect(s).toEqual({ interfaces: ['br0', 'docker0'], sources: ['172.17.0.0/16', 'fd88::/64'].map(parseCidr) })
    expect(describeGatewayScope(s!)).toBe('br0, docker0 from 172.17.0.0/16, fd88::/64')
    expect(planGatewayScope(a({ allow: ['192.168.1.0/24'] }), ['br0', 'eth0'])).toEqual({ sources: [parseCidr('192.168.1.0/24')] })
  })

  it('an interface must exist here with an address, and have a plain name', () => {
    expect(() => planGatewayScope(a({ gatewayInterfaces: ['br1'] }), ['br0', 'eth0'])).toThrow(/no interface "br1" with an address here/)
    expect(() => planGatewayScope(a({ gatewayInterfaces: ['eth+'] }), ['eth0'])).toThrow(/"eth\+" is not an interface name/)
    const nine = Array.from({ length: 9 }, (_, i) => `br${i}`)
    expect(() => planGatewayScope(a({ gatewayInterfaces: nine }), nine)).toThrow(/at most 8/)
    expect(() => planGatewayScope(a({ allow: ['nope'] }), ['eth0'])).toThrow(/invalid subnet/)
  })

  it('nothing without --gateway (--allow alone only concerns proxies and forwards)', () => {
    expect(planGatewayScope(a({ gateway: false, allow: ['10.0.0.0/8'] }), ['br0', 'eth0'])).toBeUndefined()
  })
})

describe('invokingUid', () => {
  it('our uid; as root under sudo, the caller whose programs are to be captured', () => {
    expect(invokingUid({}, 1000)).toBe(1000)
    expect(invokingUid({ SUDO_UID: '1000' }, 0)).toBe(1000)
    expect(invokingUid({}, 0)).toBe(0)
    // SUDO_UID only counts for root (a user cannot claim another uid), and only as a plain number
    expect(invokingUid({ SUDO_UID: '0' }, 1000)).toBe(1000)
    for (const bad of ['', '-1', '1e3', '1000 ', 'x', '99999999999']) expect(invokingUid({ SUDO_UID: bad }, 0)).toBe(0)
  })
})

describe('arguments', () => {
  const parse = (...argv: string[]) => {
    const r = parseArgs(argv, '0.0.0', { stdout: () => {}, stderr: () => {} })
    if (r.kind !== 'tunnel') throw new Error(r.kind)
    return r.args
  }

  it('--gateway-if takes comma lists, repeats and implies --gateway; --owner-only is a flag', () => {
    expect(parse('-r', 'b', '--gateway-if', 'br0,docker0', '--gateway-if', 'virbr0', '10.0.0.0/8')).toMatchObject({
      gateway: true, gatewayInterfaces: ['br0', 'docker0', 'virbr0'], ownerOnly: false,
    })
    expect(parse('-r', 'b', '--owner-only', '10.0.0.0/8')).toMatchObject({ gateway: false, gatewayInterfaces: [], ownerOnly: true })
    // --gateway stays a flag: the next word is a subnet, as before
    expect(parse('-r', 'b', '--gateway', '10.0.0.0/8')).toMatchObject({ gateway: true, subnets: ['10.0.0.0/8'] })
  })
})
