import net from 'node:net'
import { describe, expect, it } from 'vitest'
import type { DnsOptions } from '../../src/tunnel/config'
import { planDns, redirectedTo, startDns, untunnelledFamilies } from '../../src/tunnel/dns-setup'
import { silentLogger } from '../../src/observe/logger'
import type { Dialer } from '../../src/router/types'

const args = (over: Partial<DnsOptions> = {}): DnsOptions => ({ enabled: true, nsHosts: [], toNs: [], domains: [], cache: true, ...over })
/** Fake filesystem: resolv.conf text per path; resolvectl absent. */
const fs = (files: Record<string, string>) => ({
  readText: async (p: string) => files[p],
  run: async () => undefined,
})

describe('planDns', () => {
  it('captures the resolv.conf nameservers; without split DNS nothing needs a local upstream', async () => {
    const p = await planDns(args(), '/etc/resolv.conf', fs({ '/etc/resolv.conf': 'nameserver 192.168.1.1\nnameserver fd00::1\n' }))
    expect(p).toMatchObject({ capture: ['192.168.1.1', 'fd00::1'], localUpstreams: ['192.168.1.1', 'fd00::1'], usesResolved: false })
  })

  it('systemd-resolved: captures the stub and its upstreams, but sends local names to the upstreams only (no loop)', async () => {
    const p = await planDns(
      args({ domains: ['Corp.Internal.'] }),
      '/etc/resolv.conf',
      fs({
        '/etc/resolv.conf': 'nameserver 127.0.0.53\noptions edns0 trust-ad\n',
        '/run/systemd/resolve/resolv.conf': 'nameserver 10.0.0.1\nnameserver 10.0.0.2\n',
      }),
    )
    expect(p.capture).toEqual(['127.0.0.53', '10.0.0.1', '10.0.0.2'])
    expect(p.localUpstreams).toEqual(['10.0.0.1', '10.0.0.2'])
    expect(p.usesResolved).toBe(true)
    expect(p.domains).toEqual(['corp.internal'])
  })

  it('--ns-hosts replaces the detected servers', async () => {
    const p = await planDns(args({ nsHosts: ['10.9.0.53'] }), '/etc/resolv.conf', fs({ '/etc/resolv.conf': 'nameserver 1.1.1.1\n' }))
    expect(p.capture).toEqual(['10.9.0.53'])
  })

  it('rejects bad --ns-hosts / --to-ns / --dns-domain as USAGE, and no nameserver as DNS_CONFIG', async () => {
    const none = fs({ '/etc/resolv.conf': '# empty\n' })
    await expect(planDns(args({ nsHosts: ['ns1.example'] }), '/x', none)).rejects.toMatchObject({ code: 'USAGE' })
    await expect(planDns(args({ toNs: ['10.0.0.1:99999'] }), '/x', none)).rejects.toMatchObject({ code: 'USAGE' })
    await expect(planDns(args({ domains: ['..'] }), '/x', none)).rejects.toMatchObject({ code: 'USAGE' })
    await expect(planDns(args(), '/etc/resolv.conf', none)).rejects.toMatchObject({ code: 'DNS_CONFIG', hint: expect.stringMatching(/--ns-hosts/) })
  })

  it('split DNS with only a resolved stub and unknown upstreams cannot work: DNS_CONFIG', async () => {
    const stubOnly = fs({ '/etc/resolv.conf': 'nameserver 127.0.0.53\n' })
    await expect(planDns(args({ domains: ['corp.internal'] }), '/etc/resolv.conf', stubOnly)).rejects.toMatchObject({ code: 'DNS_CONFIG' })
  })
})

describe('startDns', () => {
  const dialer: Dialer = { dial: async () => Promise.reject(new Error('not used')) }
  const plan = { capture: ['127.0.0.1'], localUpstreams: ['127.0.0.1'], toNs: [], domains: [], usesResolved: false, cache: true }

  it('reads the remote resolver from the bastion and explains an account that cannot run commands', async () => {
    const rt = await startDns(plan, { dialer, includes: [], log: silentLogger, readRemote: async () => 'nameserver 127.0.0.53\n' })
    try {
      expect(rt.remote).toEqual([{ host: '127.0.0.53', port: 53 }])
      expect(rt.capture).toMatchObject({ servers: ['127.0.0.1'], exemptSourcePorts: [] })
      expect(rt.capture.port).toBeGreaterThan(0)
    } finally {
      await rt.stop()
    }
    await expect(
      startDns(plan, { dialer, includes: [], log: silentLogger, readRemote: async () => 'This account is currently not available.\n' }),
    ).rejects.toMatchObject({ code: 'DNS_CONFIG', hint: expect.stringMatching(/--to-ns/) })
  })
})

describe('DNS interceptor scope', () => {
  const dialer: Dialer = { dial: async () => Promise.reject(new Error('not used')) }
  const plan = { capture: ['10.0.0.2'], localUpstreams: [], toNs: [{ host: '10.0.0.2', port: 53 }], domains: [], usesResolved: false, cache: true }
  const connects = (host: string, port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect({ host, port }, () => (s.destroy(), resolve(true)))
      s.on('error', () => resolve(false))
    })

  it('gateway with IPv4 nameservers only: 127.0.0.1 on one port, every IPv4 address on a second one, but no IPv6 socket (no rule sends anything there)', async () => {
    const rt = await startDns(plan, { dialer, includes: [], log: silentLogger, readRemote: async () => '', gateway: true })
    try {
      const gw = rt.capture.gatewayPort!
      expect(gw).toBeGreaterThan(0)
      expect(gw).not.toBe(rt.capture.port)
      expect(await connects('127.0.0.1', rt.capture.port)).toBe(true)
      expect(await connects('127.0.0.2', rt.capture.port)).toBe(false)
      expect(await connects('127.0.0.2', gw)).toBe(true)
      expect(await connects('::1', rt.capture.port)).toBe(false)
      expect(await connects('::1', gw)).toBe(false)
    } finally {
      await rt.stop()
    }
    // without gateway: loopback only, no second port
    const local = await startDns(plan, { dialer, includes: [], log: silentLogger, readRemote: async () => '' })
    try {
      expect('gatewayPort' in local.capture).toBe(false)
      expect(await connects('127.0.0.2', local.capture.port)).toBe(false)
    } finally {
      await local.stop()
    }
  })

  it('redirectedTo: only an original destination of port 53 on a captured server counts', () => {
    const sock = {} as net.Socket
    const check = (dst: { host: string; port: number } | Error): boolean =>
      redirectedTo(['10.0.0.2', 'FD98::53'], () => {
        if (dst instanceof Error) throw dst
        return dst
      })(sock, 4)
    expect(check({ host: '10.0.0.2', port: 53 })).toBe(true)
    expect(check({ host: 'fd98:0::53', port: 53 })).toBe(true)
    // a direct connection: SO_ORIGINAL_DST reports the socket's own address and port
    expect(check({ host: '10.88.0.1', port: 40123 })).toBe(false)
    expect(check({ host: '10.0.0.2', port: 5353 })).toBe(false)
    expect(check({ host: '10.0.0.3', port: 53 })).toBe(false)
    expect(() => check(new Error('ENOENT'))).toThrow()
  })
})

describe('untunnelledFamilies', () => {
  it('the families no tunnelled subnet belongs to; none when nothing is tunnelled', async () => {
    const { parseCidr } = await import('../../src/config/cidr')
    expect(untunnelledFamilies([parseCidr('10.0.0.0/8')])).toEqual([6])
    expect(untunnelledFamilies([parseCidr('fd00::/64')])).toEqual([4])
    expect(untunnelledFamilies([parseCidr('10.0.0.0/8'), parseCidr('fd00::/64')])).toEqual([])
    expect(untunnelledFamilies([])).toEqual([])
  })
})
