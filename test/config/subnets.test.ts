import { describe, expect, it } from 'vitest'
import { formatCidr } from '../../src/config/cidr'
import { parseListen } from '../../src/config/listen'
import { localAddressNetworks, resolveNetworks, transportExcludes } from '../../src/config/subnets'

const fakeDns = async (name: string) => {
  const table: Record<string, string[]> = { 'db.internal': ['10.0.1.20', 'fd00::20'], 'gw.corp': ['192.0.2.1'] }
  if (!table[name]) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  return table[name]
}

describe('resolveNetworks', () => {
  it('accepts CIDRs, IPs and host names (every address), removing duplicates', async () => {
    const r = await resolveNetworks(['10.0.0.0/16', '10.0.0.0/16', '10.9.9.9', 'db.internal'], fakeDns)
    expect(r.map(formatCidr)).toEqual(['10.0.0.0/16', '10.9.9.9/32', '10.0.1.20/32', 'fd00::20/128'])
  })
  it('rejects text that cannot be a network or a host as BAD_CIDR', async () => {
    for (const bad of ['10.0.0.0/33', '300.1.1.1', 'a b', '10.0.0/8', 'x/y']) {
      await expect(resolveNetworks([bad], fakeDns)).rejects.toMatchObject({ code: 'BAD_CIDR' })
    }
  })
  it('reports a name that does not resolve as UNKNOWN_HOST', async () => {
    await expect(resolveNetworks(['nope.internal'], fakeDns)).rejects.toMatchObject({
      code: 'UNKNOWN_HOST',
      message: expect.stringContaining('nope.internal'),
    })
  })
})

describe('transportExcludes and local addresses', () => {
  it('excludes literal and resolvable transport hosts, skipping unresolvable later hops', async () => {
    const r = await transportExcludes(['gw.corp', '10.0.0.5', 'inner.only'], fakeDns)
    expect(r.map(formatCidr)).toEqual(['192.0.2.1/32', '10.0.0.5/32'])
  })
  it('lists interface addresses as host networks, dropping zone ids', () => {
    const r = localAddressNetworks({
      lo: [{ address: '127.0.0.1' } as never, { address: '::1' } as never],
      eth0: [{ address: 'fe80::1%eth0' } as never],
    })
    expect(r.map(formatCidr)).toEqual(['127.0.0.1/32', '::1/128', 'fe80::1/128'])
  })
})

describe('parseListen', () => {
  it('defaults to 127.0.0.1 and a free port', () => expect(parseListen(undefined)).toEqual({ host: '127.0.0.1', port: 0 }))
  it('takes a port or ip:port', () => {
    expect(parseListen('8123')).toEqual({ host: '127.0.0.1', port: 8123 })
    expect(parseListen('0.0.0.0:8123')).toEqual({ host: '0.0.0.0', port: 8123 })
  })
  it('rejects nonsense and addresses the kernel redirect cannot reach', () => {
    expect(() => parseListen('x')).toThrow(/invalid --listen/)
    expect(() => parseListen('70000')).toThrow(/invalid --listen/)
    expect(() => parseListen('10.1.1.1:80')).toThrow(/127.0.0.1/)
  })
})
