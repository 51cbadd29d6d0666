import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { natFirewall, natPlan, natRevert } from '../../../src/platform/firewall/nat'
import { FakeExecutor } from '../../fakes/fake-executor'
import type { CaptureSpec } from '../../../src/platform/firewall/types'

const spec = (include: string[], exclude: string[] = [], instanceId = 'ab12', listenPort = 4000): CaptureSpec => ({
  instanceId,
  listenPort,
  include: include.map(parseCidr),
  exclude: exclude.map(parseCidr),
})
const N = ['iptables', '-w', '-t', 'nat']
const N6 = ['ip6tables', '-w', '-t', 'nat']

describe('nat plan', () => {
  it('IPv4 only: own chain, non-TCP and local/loopback skipped, jump inserted last, no ip6tables', () => {
    const p = natPlan(spec(['10.0.0.0/16']))
    expect(p.apply).toEqual([
      [...N, '-N', 'subnet-tunnel-ab12'],
      [...N, '-A', 'subnet-tunnel-ab12', '!', '-p', 'tcp', '-j', 'RETURN'],
      [...N, '-A', 'subnet-tunnel-ab12', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'RETURN'],
      [...N, '-A', 'subnet-tunnel-ab12', '-d', '127.0.0.0/8', '-j', 'RETURN'],
      [...N, '-A', 'subnet-tunnel-ab12', '-d', '10.0.0.0/16', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'],
      [...N, '-I', 'OUTPUT', '1', '-j', 'subnet-tunnel-ab12'],
    ])
    expect(p.revert).toEqual([
      [...N, '-D', 'OUTPUT', '-j', 'subnet-tunnel-ab12'],
      [...N, '-F', 'subnet-tunnel-ab12'],
      [...N, '-X', 'subnet-tunnel-ab12'],
    ])
  })

  it('IPv4 + IPv6: ip6tables only for the IPv6 part, ::1 as loopback', () => {
    const p = natPlan(spec(['10.0.0.0/8', 'fd00::/64'], ['fd00::5']))
    const v6 = p.apply.filter((a) => a[0] === 'ip6tables')
    expect(v6).toEqual([
      [...N6, '-N', 'subnet-tunnel-ab12'],
      [...N6, '-A', 'subnet-tunnel-ab12', '!', '-p', 'tcp', '-j', 'RETURN'],
      [...N6, '-A', 'subnet-tunnel-ab12', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'RETURN'],
      [...N6, '-A', 'subnet-tunnel-ab12', '-d', '::1/128', '-j', 'RETURN'],
      [...N6, '-A', 'subnet-tunnel-ab12', '-d', 'fd00::5/128', '-j', 'RETURN'],
      [...N6, '-A', 'subnet-tunnel-ab12', '-d', 'fd00::/64', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'],
      [...N6, '-I', 'OUTPUT', '1', '-j', 'subnet-tunnel-ab12'],
    ])
    expect(p.apply.filter((a) => a[0] === 'iptables')).toHaveLength(6)
    expect(p.revert.map((a) => a[0])).toEqual(['iptables', 'iptables', 'iptables', 'ip6tables', 'ip6tables', 'ip6tables'])
  })

  it('an IPv6 exclude alone does not create IPv6 rules', () => {
    const p = natPlan(spec(['10.0.0.0/8'], ['fd00::/8']))
    expect(p.apply.some((a) => a[0] === 'ip6tables')).toBe(false)
  })

  it('longest prefix first: an exclude inside an include comes before it, an include inside an exclude too', () => {
    const p = natPlan(spec(['10.0.0.0/8', '10.1.2.0/24'], ['10.1.0.0/16']))
    const dsts = p.apply.filter((a) => a.includes('-d') && !a.includes('127.0.0.0/8')).map((a) => `${a[a.indexOf('-d') + 1]} ${a[a.indexOf('-j') + 1]}`)
    expect(dsts).toEqual(['10.1.2.0/24 REDIRECT', '10.1.0.0/16 RETURN', '10.0.0.0/8 REDIRECT'])
  })

  it('the same network included and excluded is excluded', () => {
    const p = natPlan(spec(['10.0.0.0/8'], ['10.0.0.0/8']))
    expect(p.apply.some((a) => a.includes('REDIRECT'))).toBe(false)
    expect(p.apply).toContainEqual([...N, '-A', 'subnet-tunnel-ab12', '-d', '10.0.0.0/8', '-j', 'RETURN'])
  })

  it('0/0 and ::/0 are planned like any other network', () => {
    const p = natPlan(spec(['0/0', '::/0']))
    expect(p.apply).toContainEqual([...N, '-A', 'subnet-tunnel-ab12', '-d', '0.0.0.0/0', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'])
    expect(p.apply).toContainEqual([...N6, '-A', 'subnet-tunnel-ab12', '-d', '::/0', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'])
  })

  it('two instances differ only by the object name', () => {
    const a = natPlan(spec(['10.0.0.0/8'], [], 'aaaa'))
    const b = natPlan(spec(['10.0.0.0/8'], [], 'bbbb'))
    const norm = (p: typeof a): string => JSON.stringify(p).replaceAll('subnet-tunnel-aaaa', 'X').replaceAll('subnet-tunnel-bbbb', 'X')
    expect(JSON.stringify(a)).not.toEqual(JSON.stringify(b))
    expect(norm(a)).toEqual(norm(b))
  })

  it('refuses ids and ports that must never reach argv', () => {
    expect(() => natPlan(spec(['10.0.0.0/8'], [], 'AB; rm'))).toThrow(/instance id/)
    expect(() => natPlan(spec(['10.0.0.0/8'], [], 'ab', 70000))).toThrow(/port/)
    expect(() => natRevert('../x', [4])).toThrow()
  })
})

describe('nat probe', () => {
  it('ok when iptables lists the nat OUTPUT chain; checks ip6tables only when asked', async () => {
    const x = new FakeExecutor()
    expect(await natFirewall.probe(x)).toEqual({ ok: true })
    expect(x.calls).toEqual([[...N, '-L', 'OUTPUT', '-n']])
    await natFirewall.probe(x, { ipv6: true })
    expect(x.calls.slice(1)).toEqual([[...N, '-L', 'OUTPUT', '-n'], [...N6, '-L', 'OUTPUT', '-n']])
  })

  it('missing binary → "iptables not found" with an install hint', async () => {
    const x = new FakeExecutor().on(() => true, { code: 127, stderr: 'iptables: not found' })
    const r = await natFirewall.probe(x)
    expect(r).toEqual({ ok: false, why: 'iptables not found', hint: expect.stringContaining('apt-get install iptables') })
  })

  it('an unusable nat table reports the tool’s own first line', async () => {
    const x = new FakeExecutor().on((a) => a[0] === 'ip6tables', { code: 3, stderr: "ip6tables v1.8.9 (legacy): can't initialize ip6tables table `nat'\nPerhaps…" })
    const r = await natFirewall.probe(x, { ipv6: true })
    expect(r.ok).toBe(false)
    expect(!r.ok && r.why).toMatch(/^ip6tables nat table unusable: ip6tables v1\.8\.9 \(legacy\): can't initialize/)
  })
})

describe('nat plan with DNS capture', () => {
  const C = 'subnet-tunnel-ab12'
  const withDns = (include: string[], servers: string[], exempt: number[] = [], port = 5300): CaptureSpec => ({
    ...spec(include),
    dns: { servers, port, exemptSourcePorts: exempt },
  })
  /** The rules every family gets after the DNS block. */
  const tail = (bin: string[], loop: string): string[][] => [
    [...bin, '-A', C, '!', '-p', 'tcp', '-j', 'RETURN'],
    [...bin, '-A', C, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'RETURN'],
    [...bin, '-A', C, '-d', loop, '-j', 'RETURN'],
  ]

  it('IPv4 servers: guard, redirects for UDP and TCP, all before the non-TCP/local/loopback returns', () => {
    const p = natPlan(withDns(['10.0.0.0/16'], ['10.0.0.2', '192.168.1.1']))
    expect(p.apply).toEqual([
      [...N, '-N', C],
      [...N, '-A', C, '-d', '127.0.0.1/32', '-p', 'udp', '--dport', '5300', '-j', 'RETURN'],
      [...N, '-A', C, '-d', '127.0.0.1/32', '-p', 'tcp', '--dport', '5300', '-j', 'RETURN'],
      [...N, '-A', C, '-d', '10.0.0.2', '-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N, '-A', C, '-d', '10.0.0.2', '-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N, '-A', C, '-d', '192.168.1.1', '-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N, '-A', C, '-d', '192.168.1.1', '-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      ...tail(N, '127.0.0.0/8'),
      [...N, '-A', C, '-d', '10.0.0.0/16', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'],
      [...N, '-I', 'OUTPUT', '1', '-j', C],
    ])
    // the same exact revert as without DNS: one protocol-agnostic jump
    expect(p.revert).toEqual(natRevert('ab12', [4]))
  })

  it('loopback stub 127.0.0.53 and exempt ports: exemptions first, then guard, then the stub', () => {
    const p = natPlan(withDns(['10.0.0.0/16'], ['127.0.0.53'], [40001, 40002, 40001]))
    expect(p.apply.slice(1, 10)).toEqual([
      [...N, '-A', C, '-p', 'udp', '--sport', '40001', '-j', 'RETURN'],
      [...N, '-A', C, '-p', 'tcp', '--sport', '40001', '-j', 'RETURN'],
      [...N, '-A', C, '-p', 'udp', '--sport', '40002', '-j', 'RETURN'],
      [...N, '-A', C, '-p', 'tcp', '--sport', '40002', '-j', 'RETURN'],
      [...N, '-A', C, '-d', '127.0.0.1/32', '-p', 'udp', '--dport', '5300', '-j', 'RETURN'],
      [...N, '-A', C, '-d', '127.0.0.1/32', '-p', 'tcp', '--dport', '5300', '-j', 'RETURN'],
      [...N, '-A', C, '-d', '127.0.0.53', '-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N, '-A', C, '-d', '127.0.0.53', '-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N, '-A', C, '!', '-p', 'tcp', '-j', 'RETURN'],
    ])
    // the stub redirect precedes the rules that would skip it (127.0.0.53 is LOCAL and loopback)
    const idx = (needle: string): number => p.apply.findIndex((a) => a.join(' ').includes(needle))
    expect(idx('-d 127.0.0.53')).toBeLessThan(idx('--dst-type LOCAL'))
    expect(idx('-d 127.0.0.53')).toBeLessThan(idx('-d 127.0.0.0/8'))
  })

  it('v4 + v6 servers: an IPv6 nameserver alone brings ip6tables rules (and their revert)', () => {
    const p = natPlan(withDns(['10.0.0.0/16'], ['10.0.0.2', 'FD98:0::53', 'fd98::53'], [40001]))
    expect(p.apply.filter((a) => a[0] === 'ip6tables')).toEqual([
      [...N6, '-N', C],
      [...N6, '-A', C, '-p', 'udp', '--sport', '40001', '-j', 'RETURN'],
      [...N6, '-A', C, '-p', 'tcp', '--sport', '40001', '-j', 'RETURN'],
      [...N6, '-A', C, '-d', '::1/128', '-p', 'udp', '--dport', '5300', '-j', 'RETURN'],
      [...N6, '-A', C, '-d', '::1/128', '-p', 'tcp', '--dport', '5300', '-j', 'RETURN'],
      // written two ways, planned once, canonical
      [...N6, '-A', C, '-d', 'fd98::53', '-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      [...N6, '-A', C, '-d', 'fd98::53', '-p', 'tcp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'],
      ...tail(N6, '::1/128'),
      [...N6, '-I', 'OUTPUT', '1', '-j', C],
    ])
    expect(p.apply.filter((a) => a[0] === 'iptables' && a.join(' ').includes('fd98'))).toEqual([])
    expect(p.revert).toEqual(natRevert('ab12', [4, 6]))
  })

  it('refuses a DNS capture that could produce bad argv', () => {
    const bad = (dns: Partial<NonNullable<CaptureSpec['dns']>>): (() => unknown) =>
      () => natPlan({ ...spec(['10.0.0.0/8']), dns: { servers: ['10.0.0.2'], port: 5300, exemptSourcePorts: [], ...dns } })
    expect(bad({})).not.toThrow()
    expect(bad({ servers: ['10.0.0.2 ; -F'] })).toThrow(/not an IP address/)
    expect(bad({ servers: ['10.0.0.0/8'] })).toThrow(/not an IP address/)
    expect(bad({ servers: [] })).toThrow(/servers/)
    expect(bad({ port: 0 })).toThrow(/port/)
    expect(bad({ exemptSourcePorts: [65536] })).toThrow(/exempt/)
    // a gateway port only with gateway, and then a port of its own
    expect(bad({ gatewayPort: 5301 })).toThrow(/gateway port/)
    const gwBad = (gatewayPort: number | undefined) => () => natPlan({ ...spec(['10.0.0.0/8']), gateway: true,
      dns: { servers: ['10.0.0.2'], port: 5300, gatewayPort, exemptSourcePorts: [] } })
    expect(gwBad(5301)).not.toThrow()
    expect(gwBad(undefined)).toThrow(/gateway port/)
    expect(gwBad(5300)).toThrow(/gateway port/)
    expect(gwBad(70000)).toThrow(/gateway port/)
  })
})

describe('nat plan with gateway', () => {
  const C = 'subnet-tunnel-ab12'
  const gw = (over: Partial<CaptureSpec> = {}): CaptureSpec => ({ ...spec(['10.0.0.0/16', 'fd00::/64'], ['10.0.9.0/24']), gateway: true, ...over })

  it('the same chain, jumped to from PREROUTING too (after OUTPUT, per family); the revert deletes both jumps', () => {
    const p = natPlan(gw())
    const plain = natPlan({ ...gw(), gateway: undefined })
    // exactly the plan without gateway, plus one PREROUTING jump per family right after the OUTPUT jump
    expect(p.apply.filter((a) => !a.includes('PREROUTING'))).toEqual(plain.apply)
    const jumps = p.apply.filter((a) => a.includes('-j') && a[a.length - 1] === C)
    expect(jumps).toEqual([
      [...N, '-I', 'OUTPUT', '1', '-j', C],
      [...N, '-I', 'PREROUTING', '1', '-j', C],
      [...N6, '-I', 'OUTPUT', '1', '-j', C],
      [...N6, '-I', 'PREROUTING', '1', '-j', C],
    ])
    expect(p.apply.indexOf(jumps[1])).toBe(p.apply.indexOf(jumps[0]) + 1)
    expect(p.revert).toEqual([
      [...N, '-D', 'OUTPUT', '-j', C],
      [...N, '-D', 'PREROUTING', '-j', C],
      [...N, '-F', C],
      [...N, '-X', C],
      [...N6, '-D', 'OUTPUT', '-j', C],
      [...N6, '-D', 'PREROUTING', '-j', C],
      [...N6, '-F', C],
      [...N6, '-X', C],
    ])
    expect(p.revert).toEqual(natRevert('ab12', [4, 6], { gateway: true }))
  })

  it('keeps the LOCAL-destination return before any redirect (the host’s own services stay reachable)', () => {
    const p = natPlan(gw())
    const v4 = p.apply.filter((a) => a[0] === 'iptables').map((a) => a.join(' '))
    const local = v4.findIndex((l) => l.includes('--dst-type LOCAL -j RETURN'))
    expect(local).toBeGreaterThan(0)
    expect(v4.findIndex((l) => l.includes('REDIRECT'))).toBeGreaterThan(local)
  })

  it('gateway false or absent: no PREROUTING anywhere, the revert as before', () => {
    for (const gateway of [false, undefined]) {
      const p = natPlan(gw({ gateway }))
      expect(JSON.stringify(p)).not.toContain('PREROUTING')
      expect(p.revert).toEqual(natRevert('ab12', [4, 6]))
    }
  })

  it('refuses a non-boolean flag', () => {
    expect(() => natPlan(gw({ gateway: 'yes' as unknown as boolean }))).toThrow(/gateway/)
  })

  it('DNS: queries from other hosts (a source that is not ours: PREROUTING) go to the gateway port, this host\'s own to the loopback port', () => {
    const dns = { servers: ['10.0.0.2', 'fd98::53'], port: 5300, exemptSourcePorts: [] }
    const p = natPlan(gw({ dns: { ...dns, gatewayPort: 5301 } }))
    const plain = natPlan(gw({ gateway: undefined, dns }))
    const rules = (q: typeof p, bin: string): string[][] => q.apply.filter((a) => a[0] === bin && a[3] === 'nat' && a[4] === '-A' && a[5] === C)
    const notLocal = ['-m', 'addrtype', '!', '--src-type', 'LOCAL']
    for (const [bin, ns] of [['iptables', '10.0.0.2'], ['ip6tables', 'fd98::53']]) {
      const t = [bin, '-w', '-t', 'nat']
      const gwRules = [
        [...t, '-A', C, '-d', ns, '-p', 'udp', '--dport', '53', ...notLocal, '-j', 'REDIRECT', '--to-ports', '5301'],
        [...t, '-A', C, '-d', ns, '-p', 'tcp', '--dport', '53', ...notLocal, '-j', 'REDIRECT', '--to-ports', '5301'],
      ]
      // the chain without gateway, with the gateway redirects right before the loopback ones
      const before = rules(plain, bin)
      const at = before.findIndex((a) => a.includes('REDIRECT'))
      expect(rules(p, bin)).toEqual([...before.slice(0, at), ...gwRules, ...before.slice(at)])
      expect(before[at]).toEqual([...t, '-A', C, '-d', ns, '-p', 'udp', '--dport', '53', '-j', 'REDIRECT', '--to-ports', '5300'])
    }
    // the revert does not depend on ports
    expect(p.revert).toEqual(natRevert('ab12', [4, 6], { gateway: true, dnsGuard: true }))
  })
})

describe('nat plan: gateway scope, owner, DNS guard', () => {
  const C = 'subnet-tunnel-ab12'
  const F = ['iptables', '-w', '-t', 'filter']
  const F6 = ['ip6tables', '-w', '-t', 'filter']
  const base = (over: Partial<CaptureSpec> = {}): CaptureSpec => ({ ...spec(['10.0.0.0/16', 'fd00::/64']), ...over })
  const jumps = (p: { apply: string[][] }, hook: string): string[][] => p.apply.filter((a) => a.includes(hook))

  it('a scoped gateway: one PREROUTING jump per interface × source network of the family, deleted exactly', () => {
    const p = natPlan(base({
      gateway: true,
      gatewayInterfaces: ['br0', 'docker0'],
      gatewaySources: ['172.17.0.0/16', '10.88.0.0/24', '10.88.0.128/25', 'fd88::/64'].map(parseCidr),
    }))
    expect(jumps(p, 'PREROUTING')).toEqual([
      // 10.88.0.128/25 lies inside 10.88.0.0/24: no jump of its own
      [...N, '-I', 'PREROUTING', '1', '-i', 'br0', '-s', '172.17.0.0/16', '-j', C],
      [...N, '-I', 'PREROUTING', '1', '-i', 'br0', '-s', '10.88.0.0/24', '-j', C],
      [...N, '-I', 'PREROUTING', '1', '-i', 'docker0', '-s', '172.17.0.0/16', '-j', C],
      [...N, '-I', 'PREROUTING', '1', '-i', 'docker0', '-s', '10.88.0.0/24', '-j', C],
      [...N6, '-I', 'PREROUTING', '1', '-i', 'br0', '-s', 'fd88::/64', '-j', C],
      [...N6, '-I', 'PREROUTING', '1', '-i', 'docker0', '-s', 'fd88::/64', '-j', C],
    ])
    // each jump deleted with exactly its own matches: `-I PREROUTING 1 …` → `-D PREROUTING …`
    const deletes = jumps(p, 'PREROUTING').map((a) => [...a.slice(0, 4), '-D', 'PREROUTING', ...a.slice(7)])
    expect(p.revert.filter((a) => a.includes('PREROUTING'))).toEqual(deletes)
  })

  it('interfaces only: every source on them; sources only: every interface; a family without sources is not served', () => {
    const ifOnly = natPlan(base({ gateway: true, gatewayInterfaces: ['br0'] }))
    expect(jumps(ifOnly, 'PREROUTING')).toEqual([
      [...N, '-I', 'PREROUTING', '1', '-i', 'br0', '-j', C],
      [...N6, '-I', 'PREROUTING', '1', '-i', 'br0', '-j', C],
    ])
    const v4Sources = natPlan(base({ gateway: true, gatewaySources: [parseCidr('192.168.1.0/24')] }))
    expect(jumps(v4Sources, 'PREROUTING')).toEqual([[...N, '-I', 'PREROUTING', '1', '-s', '192.168.1.0/24', '-j', C]])
    expect(v4Sources.revert.filter((a) => a[0] === 'ip6tables' && a.includes('PREROUTING'))).toEqual([])
  })

  it('--owner-only: the OUTPUT jump matches the uid (the chain is shared with PREROUTING, where owner cannot match)', () => {
    const p = natPlan(base({ ownerUid: 1000, gateway: true, gatewayInterfaces: ['br0'] }))
    expect(jumps(p, 'OUTPUT')).toEqual([
      [...N, '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '1000', '-j', C],
      [...N6, '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '1000', '-j', C],
    ])
    expect(p.revert).toContainEqual([...N, '-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '1000', '-j', C])
    expect(p.revert).not.toContainEqual([...N, '-D', 'OUTPUT', '-j', C])
    expect(JSON.stringify(jumps(p, 'PREROUTING'))).not.toContain('owner')
    // uid 0 is a uid like any other
    expect(jumps(natPlan(base({ ownerUid: 0 })), 'OUTPUT')[0]).toEqual([...N, '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '0', '-j', C])
  })

  it('DNS guard with gateway or --owner-only: a filter chain drops what reaches the interceptor ports un-NATed; first in, last out', () => {
    const dns = { servers: ['10.0.0.2'], port: 5300, exemptSourcePorts: [] }
    const drop = (proto: string, port: string) => [...F, '-A', C, '-p', proto, '--dport', port, '-m', 'conntrack', '!', '--ctstate', 'DNAT', '-j', 'DROP']
    const cases: Array<[Partial<CaptureSpec>, string[][]]> = [
      [{ gateway: true, dns: { ...dns, gatewayPort: 5301 } }, [drop('udp', '5300'), drop('tcp', '5300'), drop('udp', '5301'), drop('tcp', '5301')]],
      [{ ownerUid: 1000, dns }, [drop('udp', '5300'), drop('tcp', '5300')]],
    ]
    for (const [over, drops] of cases) {
      const p = natPlan(base(over))
      expect(p.apply.slice(0, drops.length + 2)).toEqual([[...F, '-N', C], ...drops, [...F, '-I', 'INPUT', '1', '-j', C]])
      // IPv6 rules exist (fd00::/64 is included), so the guard is there for IPv6 too
      expect(p.apply).toContainEqual([...F6, '-I', 'INPUT', '1', '-j', C])
      const v4 = p.revert.filter((a) => a[0] === 'iptables')
      expect(v4.slice(-3)).toEqual([[...F, '-D', 'INPUT', '-j', C], [...F, '-F', C], [...F, '-X', C]])
      expect(p.revert).toEqual(natRevert('ab12', [4, 6], { ...over, dnsGuard: true }))
    }
  })

  it('no guard without DNS, or with DNS but neither gateway nor --owner-only (only local users reach loopback)', () => {
    const dns = { servers: ['10.0.0.2'], port: 5300, exemptSourcePorts: [] }
    for (const p of [natPlan(base({ dns })), natPlan(base({ gateway: true })), natPlan(base({ ownerUid: 7 }))]) {
      expect(JSON.stringify(p)).not.toContain('filter')
    }
  })

  it('a journal entry written before these options (gateway: true only) reverts as it was applied', () => {
    expect(natRevert('ab12', [4], { gateway: true })).toEqual([
      [...N, '-D', 'OUTPUT', '-j', C],
      [...N, '-D', 'PREROUTING', '-j', C],
      [...N, '-F', C],
      [...N, '-X', C],
    ])
  })

  it('refuses scope fields that could smuggle argv or make no sense', () => {
    const bad = (over: Partial<CaptureSpec>) => () => natPlan(base({ gateway: true, ...over }))
    expect(bad({ gatewayInterfaces: ['eth0 -j ACCEPT'] })).toThrow(/interfaces/)
    expect(bad({ gatewayInterfaces: ['..'] })).toThrow(/interfaces/)
    expect(bad({ gatewayInterfaces: [] })).toThrow(/interfaces/)
    expect(bad({ gatewaySources: [] })).toThrow(/sources/)
    expect(bad({ gatewaySources: [{ family: 4, address: '10.0.0.0 -j DROP', prefix: 8 }] })).toThrow(/sources/)
    expect(bad({ gatewaySources: [{ family: 6, address: '10.0.0.0', prefix: 8 }] })).toThrow(/sources/)
    expect(bad({ ownerUid: -1 })).toThrow(/owner/)
    expect(bad({ ownerUid: 1.5 })).toThrow(/owner/)
    expect(() => natPlan(base({ gatewayInterfaces: ['br0'] }))).toThrow(/without gateway/)
  })
})

describe('nat plan: exec --only', () => {
  const C = 'subnet-tunnel-ab12'
  it('the OUTPUT jump matches the cgroup (the kernel resolves the path), deleted exactly, also from a journal record', () => {
    const p = natPlan({ ...spec(['10.0.0.0/16']), cgroup: C, ownerUid: 1000 })
    const jump = p.apply.filter((a) => a.includes('OUTPUT'))
    expect(jump).toEqual([[...N, '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '1000', '-m', 'cgroup', '--path', C, '-j', C]])
    const del = [...N, '-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '1000', '-m', 'cgroup', '--path', C, '-j', C]
    expect(p.revert).toContainEqual(del)
    expect(natFirewall.revert({ id: 'ab12', families: [4], ownerUid: 1000, cgroup: C })).toContainEqual(del)
    expect(() => natPlan({ ...spec(['10.0.0.0/16']), cgroup: 'subnet-tunnel-ab12 -j ACCEPT' })).toThrow(/invalid capture scope/)
  })
})
