import { describe, expect, it } from 'vitest'
import { flushResolvedCache, isResolvedStub, parseResolvConf, parseResolvectlDns, readLocalDns, remoteResolvers, systemdResolvedUpstreams } from '../../src/dns/resolv-conf'

const text = `# generated
nameserver 10.0.0.2
nameserver   fe80::1%eth0   # link-local
; comment
nameserver not-an-ip
nameserver 2001:db8::53
nameserver 10.0.0.2
search corp.internal. lab.corp.internal
options edns0 trust-ad
`

describe('parseResolvConf', () => {
  it('reads v4 and v6 nameservers (scope dropped, duplicates and junk skipped) and search', () => {
    const r = parseResolvConf(text)
    expect(r.nameservers).toEqual(['10.0.0.2', 'fe80::1', '2001:db8::53'])
    expect(r.scopedNameservers).toEqual(['10.0.0.2', 'fe80::1%eth0', '2001:db8::53'])
    expect(r.search).toEqual(['corp.internal', 'lab.corp.internal'])
  })

  it('handles an empty file and the systemd stub', () => {
    expect(parseResolvConf('')).toEqual({ nameservers: [], scopedNameservers: [], search: [] })
    expect(isResolvedStub(parseResolvConf('nameserver 127.0.0.53\n').nameservers[0])).toBe(true)
  })

  it('remoteResolvers keeps the bastion stub, drops link-local, adds port 53', () => {
    expect(remoteResolvers('nameserver 127.0.0.53\nnameserver fe80::1%2\nnameserver 10.0.0.2')).toEqual([
      { host: '127.0.0.53', port: 53 },
      { host: '10.0.0.2', port: 53 },
    ])
  })
})

describe('systemd-resolved', () => {
  const out = `Global: 1.1.1.1#cloudflare-dns.com
Link 2 (eth0): 192.168.1.1 fe80::1%2 [2001:db8::1]:53 9.9.9.9:53
Link 3 (docker0):
`
  it('parses resolvectl dns output', () => {
    expect(parseResolvectlDns(out)).toEqual(['1.1.1.1', '192.168.1.1', 'fe80::1', '2001:db8::1', '9.9.9.9'])
  })

  it('prefers /run/systemd/resolve/resolv.conf and falls back to resolvectl', async () => {
    const files: Record<string, string> = { '/run/systemd/resolve/resolv.conf': 'nameserver 192.168.1.1\n' }
    const readText = async (p: string) => files[p]
    const run = async () => out
    expect(await systemdResolvedUpstreams({ readText, run })).toEqual(['192.168.1.1'])
    expect(await systemdResolvedUpstreams({ readText: async () => undefined, run })).toContain('9.9.9.9')
    expect(await systemdResolvedUpstreams({ readText: async () => undefined, run: async () => undefined })).toEqual([])
  })

  it('readLocalDns notices the stub and finds the upstreams', async () => {
    const files: Record<string, string> = {
      '/etc/resolv.conf': 'nameserver 127.0.0.53\nsearch lan\n',
      '/run/systemd/resolve/resolv.conf': 'nameserver 192.168.1.1\nnameserver 127.0.0.53\n',
    }
    const d = await readLocalDns('/etc/resolv.conf', { readText: async (p) => files[p], run: async () => undefined })
    expect(d.usesResolved).toBe(true)
    expect(d.resolvedUpstreams).toEqual(['192.168.1.1'])
    const plain = await readLocalDns('/etc/resolv.conf', { readText: async () => 'nameserver 10.0.0.2', run: async () => 'x' })
    expect(plain).toMatchObject({ usesResolved: false, resolvedUpstreams: [] })
  })

  it('flushResolvedCache runs resolvectl flush-caches and tolerates failure', async () => {
    const calls: string[][] = []
    expect(await flushResolvedCache(async (f, args) => (calls.push([f, ...args]), ''))).toBe(true)
    expect(calls).toEqual([['resolvectl', 'flush-caches']])
    expect(await flushResolvedCache(async () => undefined)).toBe(false)
  })
})

describe('parseServerSpec (--to-ns)', () => {
  it('accepts IPs with optional ports, v4 and v6', async () => {
    const { parseServerSpec } = await import('../../src/dns/resolv-conf')
    expect(parseServerSpec('10.0.0.2')).toEqual({ host: '10.0.0.2', port: 53 })
    expect(parseServerSpec('10.0.0.2:5353')).toEqual({ host: '10.0.0.2', port: 5353 })
    expect(parseServerSpec('fd00::53')).toEqual({ host: 'fd00::53', port: 53 })
    expect(parseServerSpec('[fd00::53]:5353')).toEqual({ host: 'fd00::53', port: 5353 })
    expect(parseServerSpec('ns.example')).toBeUndefined()
    expect(parseServerSpec('10.0.0.2:0')).toBeUndefined()
    expect(parseServerSpec('10.0.0.2:70000')).toBeUndefined()
  })
})
