import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { nftFirewall, nftPlan, probeTableName } from '../../../src/platform/firewall/nft'
import { FakeExecutor } from '../../fakes/fake-executor'
import type { CaptureSpec } from '../../../src/platform/firewall/types'

const spec = (include: string[], exclude: string[] = [], instanceId = 'ab12'): CaptureSpec => ({
  instanceId,
  listenPort: 4000,
  include: include.map(parseCidr),
  exclude: exclude.map(parseCidr),
})

/** Splits the single batch argv back into its ';'-separated commands (outside braces). */
function commands(argv: string[]): string[] {
  expect(argv[0]).toBe('nft')
  const out: string[][] = [[]]
  let depth = 0
  for (const t of argv.slice(1)) {
    if (t === '{') depth++
    if (t === '}') depth--
    if (t === ';' && depth === 0) out.push([])
    else out[out.length - 1].push(t)
  }
  return out.map((c) => c.join(' '))
}

const T = 'inet subnet-tunnel-ab12'

describe('nft plan', () => {
  it('IPv4 only: one atomic nft invocation, create (not add) table, nat chain at -100', () => {
    const p = nftPlan(spec(['10.0.0.0/16']))
    expect(p.apply).toHaveLength(1)
    expect(p.apply[0].slice(0, 5)).toEqual(['nft', 'create', 'table', 'inet', 'subnet-tunnel-ab12'])
    expect(commands(p.apply[0])).toEqual([
      `create table ${T}`,
      `add chain ${T} output { type nat hook output priority -100 ; policy accept ; }`,
      `add rule ${T} output meta l4proto != tcp return`,
      `add rule ${T} output fib daddr type local return`,
      `add rule ${T} output ip daddr 127.0.0.0/8 return`,
      `add rule ${T} output ip daddr 10.0.0.0/16 meta l4proto tcp redirect to :4000`,
    ])
    expect(p.revert).toEqual([['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']])
  })

  it('IPv4 + IPv6 in the same inet table; excludes inside includes come first', () => {
    const p = nftPlan(spec(['10.0.0.0/8', 'fd00::/64'], ['10.9.0.0/16', 'fd00::5']))
    expect(commands(p.apply[0]).slice(4)).toEqual([
      `add rule ${T} output ip daddr 127.0.0.0/8 return`,
      `add rule ${T} output ip6 daddr ::1/128 return`,
      `add rule ${T} output ip daddr 10.9.0.0/16 return`,
      `add rule ${T} output ip daddr 10.0.0.0/8 meta l4proto tcp redirect to :4000`,
      `add rule ${T} output ip6 daddr fd00::5/128 return`,
      `add rule ${T} output ip6 daddr fd00::/64 meta l4proto tcp redirect to :4000`,
    ])
  })

  it('0/0 with an exclude', () => {
    const c = commands(nftPlan(spec(['0/0'], ['192.168.0.0/16'])).apply[0])
    expect(c.slice(-2)).toEqual([
      `add rule ${T} output ip daddr 192.168.0.0/16 return`,
      `add rule ${T} output ip daddr 0.0.0.0/0 meta l4proto tcp redirect to :4000`,
    ])
  })

  it('no include → empty plan', () => {
    expect(nftPlan(spec([], ['10.0.0.0/8']))).toEqual({ apply: [], revert: [] })
  })

  it('two instances differ only by the table name', () => {
    const a = JSON.stringify(nftPlan(spec(['10.0.0.0/8'], [], 'x1')))
    const b = JSON.stringify(nftPlan(spec(['10.0.0.0/8'], [], 'y2')))
    expect(a).not.toEqual(b)
    expect(a.replaceAll('subnet-tunnel-x1', 'T')).toEqual(b.replaceAll('subnet-tunnel-y2', 'T'))
  })
})

describe('nft probe', () => {
  it('lists tables, creates and deletes a throwaway table not named like ours', async () => {
    const x = new FakeExecutor()
    expect(await nftFirewall.probe(x)).toEqual({ ok: true })
    const t = probeTableName()
    expect(t).not.toMatch(/^subnet-tunnel-/)
    expect(x.calls[0]).toEqual(['nft', 'list', 'tables'])
    expect(x.calls[1].slice(0, 5)).toEqual(['nft', 'add', 'table', 'inet', t])
    expect(x.calls[2]).toEqual(['nft', 'delete', 'table', 'inet', t])
  })

  it('nft missing → "nft not found"', async () => {
    const r = await nftFirewall.probe(new FakeExecutor().on(() => true, { code: 127 }))
    expect(r).toMatchObject({ ok: false, why: 'nft not found', hint: expect.stringContaining('nftables') })
  })

  it('no nat support → not usable, throwaway table still deleted', async () => {
    const x = new FakeExecutor().failAt(1, 'Error: Could not process rule: No such file or directory\nadd chain …')
    const r = await nftFirewall.probe(x)
    expect(r).toMatchObject({ ok: false, why: 'nft cannot create a nat chain: Error: Could not process rule: No such file or directory' })
    expect(x.calls[2][1]).toBe('delete')
  })
})

describe('nft plan with DNS capture', () => {
  const withDns = (include: string[], servers: string[], exempt: number[] = []): CaptureSpec => ({
    ...spec(include),
    dns: { servers, port: 5300, exemptSourcePorts: exempt },
  })
  const base = [
    `create table ${T}`,
    `add chain ${T} output { type nat hook output priority -100 ; policy accept ; }`,
  ]

  it('IPv4 servers: guard and UDP+TCP redirects come before "non-TCP → return" and the local returns', () => {
    const p = nftPlan(withDns(['10.0.0.0/16'], ['10.0.0.2']))
    expect(p.apply).toHaveLength(1)
    expect(commands(p.apply[0])).toEqual([
      ...base,
      `add rule ${T} output ip daddr 127.0.0.1 udp dport 5300 return`,
      `add rule ${T} output ip daddr 127.0.0.1 tcp dport 5300 return`,
      `add rule ${T} output ip daddr 10.0.0.2 udp dport 53 redirect to :5300`,
      `add rule ${T} output ip daddr 10.0.0.2 tcp dport 53 redirect to :5300`,
      `add rule ${T} output meta l4proto != tcp return`,
      `add rule ${T} output fib daddr type local return`,
      `add rule ${T} output ip daddr 127.0.0.0/8 return`,
      `add rule ${T} output ip daddr 10.0.0.0/16 meta l4proto tcp redirect to :4000`,
    ])
    expect(p.revert).toEqual([['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']])
  })

  it('v4 + v6 servers, loopback stub and exempt ports (one set per protocol, first of all)', () => {
    const p = nftPlan(withDns(['10.0.0.0/16'], ['127.0.0.53', 'fd98::53', '127.0.0.53'], [40001, 40002]))
    expect(commands(p.apply[0])).toEqual([
      ...base,
      `add rule ${T} output udp sport { 40001,40002 } return`,
      `add rule ${T} output tcp sport { 40001,40002 } return`,
      `add rule ${T} output ip daddr 127.0.0.1 udp dport 5300 return`,
      `add rule ${T} output ip daddr 127.0.0.1 tcp dport 5300 return`,
      `add rule ${T} output ip6 daddr ::1 udp dport 5300 return`,
      `add rule ${T} output ip6 daddr ::1 tcp dport 5300 return`,
      `add rule ${T} output ip daddr 127.0.0.53 udp dport 53 redirect to :5300`,
      `add rule ${T} output ip daddr 127.0.0.53 tcp dport 53 redirect to :5300`,
      `add rule ${T} output ip6 daddr fd98::53 udp dport 53 redirect to :5300`,
      `add rule ${T} output ip6 daddr fd98::53 tcp dport 53 redirect to :5300`,
      `add rule ${T} output meta l4proto != tcp return`,
      `add rule ${T} output fib daddr type local return`,
      `add rule ${T} output ip daddr 127.0.0.0/8 return`,
      `add rule ${T} output ip6 daddr ::1/128 return`,
      `add rule ${T} output ip daddr 10.0.0.0/16 meta l4proto tcp redirect to :4000`,
    ])
  })

  it('a server string can never smuggle nft syntax into the command buffer', () => {
    expect(() => nftPlan(withDns(['10.0.0.0/8'], ['10.0.0.2 ; flush ruleset']))).toThrow(/not an IP address/)
    expect(() => nftPlan(withDns(['10.0.0.0/8'], ['fe80::1%eth0']))).toThrow(/not an IP address/)
  })
})

describe('nft plan with gateway', () => {
  const gw = (over: Partial<CaptureSpec> = {}): CaptureSpec => {
    const s = { ...spec(['10.0.0.0/16', 'fd00::/64'], ['10.0.9.0/24']), gateway: true, ...over }
    // the interceptor's second port, on every address, exactly in gateway mode
    return { ...s, dns: { servers: ['10.0.0.2', '127.0.0.53'], port: 5300, ...(s.gateway && { gatewayPort: 5301 }), exemptSourcePorts: [40001] } }
  }

  it('a prerouting chain in the same table with the same rules, minus what concerns only local packets, DNS to the gateway port; still one batch', () => {
    const p = nftPlan(gw())
    expect(p.apply).toHaveLength(1)
    // (the DNS guard's input chain, which gateway adds too, is tested below)
    const all = commands(p.apply[0]).filter((c) => !c.startsWith(`add chain ${T} input`) && !c.startsWith(`add rule ${T} input`))
    const plain = commands(nftPlan(gw({ gateway: undefined })).apply[0])
    // the output part is exactly the plan without gateway
    expect(all.slice(0, plain.length)).toEqual(plain)
    const pre = all.slice(plain.length)
    expect(pre[0]).toBe(`add chain ${T} prerouting { type nat hook prerouting priority -100 ; policy accept ; }`)
    const body = (c: string, chain: string): string => c.replace(`add rule ${T} ${chain} `, '')
    const outRules = plain.filter((c) => c.startsWith(`add rule ${T} output `)).map((c) => body(c, 'output'))
    // local only: our forwarder's source ports, and packets already going to the loopback port
    const localOnly = (r: string): boolean => r.includes('sport') || r.includes('dport 5300 return')
    expect(pre.slice(1).map((c) => body(c, 'prerouting'))).toEqual(
      outRules.filter((r) => !localOnly(r)).map((r) => r.replace('redirect to :5300', 'redirect to :5301')))
    expect(outRules.filter(localOnly)).toHaveLength(6)
    expect(pre).toContain(`add rule ${T} prerouting fib daddr type local return`)
    expect(pre).toContain(`add rule ${T} prerouting ip daddr 10.0.0.2 udp dport 53 redirect to :5301`)
    expect(pre.join('\n')).not.toContain('5300')
    // this host's own queries still go to the loopback port, whose socket answers from 127.0.0.1
    expect(all).toContain(`add rule ${T} output ip daddr 10.0.0.2 udp dport 53 redirect to :5300`)
    expect(all.filter((c) => c.startsWith(`add rule ${T} output`)).join('\n')).not.toContain('5301')
    expect(pre).toContain(`add rule ${T} prerouting ip6 daddr fd00::/64 meta l4proto tcp redirect to :4000`)
    // the local return comes before every TCP redirect
    const local = pre.indexOf(`add rule ${T} prerouting fib daddr type local return`)
    expect(pre.findIndex((c) => c.includes('l4proto tcp redirect'))).toBeGreaterThan(local)
    // one `delete table` still removes both chains
    expect(p.revert).toEqual([['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']])
  })

  it('gateway false or absent: no prerouting chain', () => {
    for (const gateway of [false, undefined]) {
      expect(nftPlan(gw({ gateway })).apply[0].join(' ')).not.toContain('prerouting')
    }
  })
})

describe('nft plan: gateway scope, owner, DNS guard', () => {
  const base = (over: Partial<CaptureSpec> = {}): CaptureSpec => ({ ...spec(['10.0.0.0/16', 'fd00::/64']), ...over })
  const chain = (p: { apply: string[][] }, name: string): string[] =>
    commands(p.apply[0]).filter((c) => c.startsWith(`add rule ${T} ${name} `)).map((c) => c.slice(`add rule ${T} ${name} `.length))

  it('a scoped gateway: returns for other interfaces and other sources (per family) come first in prerouting', () => {
    const p = nftPlan(base({
      gateway: true,
      gatewayInterfaces: ['br0', 'br-1a2b.10'],
      gatewaySources: ['172.17.0.0/16', '172.17.3.0/24', '10.88.0.0/24'].map(parseCidr),
    }))
    const pre = chain(p, 'prerouting')
    expect(pre.slice(0, 3)).toEqual([
      'iifname != { "br0","br-1a2b.10" } return',
      // nested networks are dropped (nft refuses overlapping intervals in one set)
      'ip saddr != { 172.17.0.0/16,10.88.0.0/24 } return',
      // no IPv6 source named: no IPv6 packet is served
      'meta nfproto ipv6 return',
    ])
    expect(pre[3]).toBe('meta l4proto != tcp return')
    // the output chain is untouched
    expect(chain(p, 'output')).toEqual(chain(nftPlan(base()), 'output'))
  })

  it('one interface or source: no set; interfaces only: no source rule', () => {
    const one = chain(nftPlan(base({ gateway: true, gatewayInterfaces: ['br0'] })), 'prerouting')
    expect(one[0]).toBe('iifname != "br0" return')
    expect(one[1]).toBe('meta l4proto != tcp return')
    const src = chain(nftPlan(base({ gateway: true, gatewaySources: ['fd88::/64'].map(parseCidr) })), 'prerouting')
    expect(src.slice(0, 2)).toEqual(['meta nfproto ipv4 return', 'ip6 saddr != fd88::/64 return'])
  })

  it('--owner-only: other uids leave the output chain first (before the DNS rules); prerouting has no owner', () => {
    const dns = { servers: ['10.0.0.2'], port: 5300, exemptSourcePorts: [40001] }
    const p = nftPlan(base({ ownerUid: 1000, dns: { ...dns, gatewayPort: 5301 }, gateway: true }))
    expect(chain(p, 'output')[0]).toBe('meta skuid != 1000 return')
    expect(chain(p, 'output').slice(1)).toEqual(chain(nftPlan(base({ dns })), 'output'))
    expect(chain(p, 'prerouting').join('\n')).not.toContain('skuid')
    expect(p.revert).toEqual([['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']])
  })

  it('DNS guard with gateway or --owner-only: a filter chain on input drops packets to the interceptor ports that were not DNATed', () => {
    const dns = { servers: ['10.0.0.2'], port: 5300, exemptSourcePorts: [] }
    const cases: Array<[Partial<CaptureSpec>, string]> = [
      [{ gateway: true, dns: { ...dns, gatewayPort: 5301 } }, '{ 5300,5301 }'],
      [{ ownerUid: 1000, dns }, '5300'],
    ]
    for (const [over, ports] of cases) {
      const all = commands(nftPlan(base(over)).apply[0])
      // in the same transaction, before the chains that redirect
      expect(all.slice(1, 3)).toEqual([
        `add chain ${T} input { type filter hook input priority 0 ; policy accept ; }`,
        `add rule ${T} input meta l4proto { udp,tcp } th dport ${ports} ct status & dnat == 0 drop`,
      ])
    }
    for (const p of [nftPlan(base({ dns })), nftPlan(base({ gateway: true })), nftPlan(base({ ownerUid: 1 }))]) {
      expect(p.apply[0].join(' ')).not.toContain(' input ')
    }
  })

  it('interface names are quoted nft strings and cannot carry syntax', () => {
    expect(() => nftPlan(base({ gateway: true, gatewayInterfaces: ['br0" ; flush ruleset ; "'] }))).toThrow(/interfaces/)
    expect(() => nftPlan(base({ gateway: true, gatewayInterfaces: ['a'.repeat(16)] }))).toThrow(/interfaces/)
  })
})

describe('nft plan: exec --only', () => {
  it('only sockets of our cgroup jump into a chain holding the capture rules (a positive match: `!=` never matches the root cgroup)', () => {
    const p = nftPlan({ ...spec(['10.0.0.0/16']), cgroup: 'subnet-tunnel-ab12' })
    const c = commands(p.apply[0])
    expect(c.filter((x) => x.includes(' output ') && x.startsWith('add rule'))).toEqual([
      `add rule ${T} output socket cgroupv2 level 1 "subnet-tunnel-ab12" jump only`,
    ])
    expect(c).toContain(`add chain ${T} only`)
    expect(c).toContain(`add rule ${T} only ip daddr 10.0.0.0/16 meta l4proto tcp redirect to :4000`)
    expect(c.indexOf(`add chain ${T} only`)).toBeLessThan(c.findIndex((x) => x.includes('jump only')))
  })
})
