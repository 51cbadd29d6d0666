import { describe, expect, it } from 'vitest'
import { isNoRouteError, parseIpLinkList, parseIpMonitorLine, parseIpRouteGet } from '../../../src/platform/os/ip-monitor'
import type { BastionPath, LinkEvent, NetEvent } from '../../../src/platform/os/net-events'
import { lookups, readFixture, scenario, scenarios } from './fixtures'
import { Replay } from './replay'

const monitorText = readFixture('ip-monitor-linux.txt')
const all = scenarios(monitorText)
const parse = (lines: string[]): NetEvent[] => lines.map((l) => parseIpMonitorLine(l)).filter((e): e is NetEvent => e !== undefined)
const eth0 = (parse(scenario(all, 'setup').lines).find((e) => e.kind === 'link' && e.name === 'eth0') as LinkEvent).index

describe('ip monitor lines (real captures)', () => {
  it('parses every captured line into an event', () => {
    const lines = all.flatMap((s) => s.lines)
    expect(lines.length).toBeGreaterThan(100)
    const unparsed = lines.filter((l) => parseIpMonitorLine(l) === undefined)
    expect(unparsed).toEqual([])
  })

  it('reads links: index, name without the peer, UP and carrier', () => {
    const lost = parse(scenario(all, 'eth0 carrier lost').lines)
    expect(lost).toEqual([{ kind: 'link', deleted: false, index: eth0, name: 'eth0', up: true, running: false }])
    const back = parse(scenario(all, 'eth0 carrier back').lines)
    expect(back).toEqual([{ kind: 'link', deleted: false, index: eth0, name: 'eth0', up: true, running: true }])
    const down = parse(scenario(all, 'eth0 admin down').lines).find((e) => e.kind === 'link')
    expect(down).toMatchObject({ up: false, running: false })
    const gone = parse(scenario(all, 'link wan1').lines).filter((e) => e.kind === 'link')
    expect(gone.at(-1)).toMatchObject({ deleted: true, name: 'wan1' })
  })

  it('reads addresses with their interface index and family', () => {
    const del = parse(scenario(all, 'source address del').lines)
    expect(del[0]).toEqual({ kind: 'addr', deleted: true, index: eth0, dev: 'eth0', family: 4, address: '192.168.50.2' })
    const slaac = parse(scenario(all, 'ipv6 router advertisement repeated').lines)
    expect(slaac).toEqual([{ kind: 'addr', deleted: false, index: eth0, dev: 'eth0', family: 6, address: expect.stringMatching(/^2001:db8:51:0:/) }])
  })

  it('reads routes: type, network, family (also of a default route), dev, via, table', () => {
    const [v4] = parse(scenario(all, 'default route replaced').lines)
    expect(v4).toEqual({ kind: 'route', deleted: false, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, dev: 'eth1', via: '192.168.60.1', table: undefined })
    const [ra] = parse(scenario(all, 'ipv6 router advertisement (new').lines)
    expect(ra).toMatchObject({ family: 6, network: '::', prefixLen: 0, dev: 'eth0', via: 'fe80::1' })
    const src = parse(scenario(all, 'source address del').lines)
    expect(src[1]).toMatchObject({ deleted: true, type: 'unicast', network: '192.168.50.0', prefixLen: 24 })
    expect(src[2]).toMatchObject({ deleted: true, type: 'broadcast', table: 'local' })
    const [host] = parse(scenario(all, 'host route').lines)
    expect(host).toMatchObject({ network: '203.0.113.7', prefixLen: 32, via: '192.168.50.1' })
  })

  it('reads an IPv4 route with an IPv6 gateway as IPv4, and multipath next hops', () => {
    expect(parseIpMonitorLine('default via inet6 fe80::1 dev eth0 proto static')).toMatchObject({ family: 4, network: '0.0.0.0', via: 'fe80::1' })
    expect(parseIpMonitorLine('default proto static metric 100 \\\tnexthop via 10.0.0.1 dev eth0 weight 1 \\\tnexthop via 10.0.1.1 dev eth1 weight 1'))
      .toMatchObject({ family: 4, prefixLen: 0, dev: 'eth0', via: '10.0.0.1' })
    expect(parseIpMonitorLine('default dev wg0 scope link')).toMatchObject({ family: undefined, prefixLen: 0, dev: 'wg0' })
    expect(parseIpMonitorLine('[ROUTE]Deleted 10.1.0.0/16 dev eth0')).toMatchObject({ deleted: true, network: '10.1.0.0', prefixLen: 16 })
    expect(parseIpMonitorLine('nonsense here')).toBeUndefined()
    expect(parseIpMonitorLine('')).toBeUndefined()
  })
})

describe('relevance of each captured scenario (IPv4 bastion 203.0.113.7 via eth0)', () => {
  const path: BastionPath = { dev: 'eth0', index: eth0, via: '192.168.50.1', src: '192.168.50.2', up: true }
  const eth1: BastionPath = { dev: 'eth1', index: eth0 + 2, via: '192.168.60.1', src: '192.168.60.2', up: true }
  // What the route lookup after each scenario says (captured in ip-lookups-linux.txt for the
  // first three), as NetWatcher would record it before the next notification.
  const lookedUp: Record<string, BastionPath | undefined> = {
    'eth0 admin down': undefined,
    'eth0 admin up': path,
    'eth0 carrier lost': { ...path, up: false },
    'eth0 carrier back': path,
    'source address del': undefined,
    'source address re-added': path,
    'default route replaced': eth1,
    'default route back': path,
    'route add 203.0.113.0/24': eth1,
    'route del 203.0.113.0/24': path,
  }
  const replay = new Replay('203.0.113.7', path)
  const verdicts = new Map(all.map((s) => {
    const v = replay.run(parse(s.lines))
    const key = Object.keys(lookedUp).find((k) => s.name.startsWith(k))
    if (key) replay.path = lookedUp[key]
    return [s.name, v]
  }))
  const level = (prefix: string): string => verdicts.get(scenario(all, prefix).name)!.level

  it.each([
    ['eth0 admin down', 'hard'],
    ['eth0 admin up', 'soft'], // no route before: the link and the routes coming back
    ['eth0 carrier lost', 'hard'],
    ['eth0 carrier back', 'hard'],
    ['source address del', 'hard'],
    ['address add 192.168.50.3', 'soft'],
    ['address del 192.168.50.3', 'soft'],
    ['source address re-added', 'soft'],
    ['default route replaced', 'soft'],
    ['default route back', 'soft'],
    ['route add 203.0.113.0/24', 'soft'],
    ['route del 203.0.113.0/24', 'soft'],
    ['host route', 'soft'],
    ['eth1 up', 'none'],
    ['unrelated: tunnelled-network route', 'none'],
    ['unrelated: docker bridge churn', 'none'],
    ['unrelated: route on eth0', 'none'],
    ['ipv6 router advertisement (new', 'none'],
    ['ipv6 router advertisement repeated', 'none'],
    ['ipv6 address with lifetimes', 'none'],
    ['ipv6 router advertisement with router lifetime 0', 'none'],
    ['ipv6 default route via', 'none'],
    ['eth1 renamed to wan1', 'none'],
    ['link wan1', 'none'],
  ])('%s → %s', (name, expected) => {
    expect(level(name)).toBe(expected)
  })

  it('says why', () => {
    expect(verdicts.get(scenario(all, 'eth0 carrier lost').name)!.reasons).toEqual(['link eth0 lost carrier'])
    expect(verdicts.get(scenario(all, 'eth0 carrier back').name)!.reasons).toEqual(['link eth0 up'])
    expect(verdicts.get(scenario(all, 'source address del').name)!.reasons[0]).toBe('source address 192.168.50.2 removed from eth0')
  })
})

describe('a renamed interface (real capture: eth1 → wan1 while ip monitor runs)', () => {
  const evs = parse(scenario(all, 'eth1 renamed to wan1').lines)
  const links = evs.filter((e) => e.kind === 'link')
  const wan1 = links[1] as LinkEvent

  it('ip monitor keeps the old name in address and route lines; the index is what stays true', () => {
    expect(links.map((l) => (l as LinkEvent).name)).toEqual(['eth1', 'wan1', 'wan1', 'wan1'])
    const added = evs.find((e) => e.kind === 'addr' && e.address === '192.168.61.2')
    expect(added).toMatchObject({ dev: 'eth1', index: wan1.index }) // stale name, right index
    expect(evs.find((e) => e.kind === 'route' && e.network === '192.168.61.0')).toMatchObject({ dev: 'eth1' })
  })

  it('so relevance matches the path interface by index: an address on wan1 is seen as ours', () => {
    // The path as a fresh `ip route get` names it (wan1), with its index.
    const path: BastionPath = { dev: 'wan1', index: wan1.index, via: '192.168.61.1', src: '192.168.60.2', up: true }
    const r = new Replay('203.0.113.7', path).run(evs.filter((e) => e.kind === 'addr' && e.address === '192.168.61.2'))
    expect(r).toEqual({ level: 'soft', reasons: ['address 192.168.61.2 added on wan1'] })
  })
})

describe('relevance for an IPv6 bastion (2001:db8:77::7 via eth0)', () => {
  const path: BastionPath = { dev: 'eth0', index: eth0, via: '2001:db8:50::1', src: '2001:db8:50::2', up: true }
  const replay = new Replay('2001:db8:77::7', path)
  const verdicts = new Map(all.map((s) => [s.name, replay.run(parse(s.lines)).level]))
  const level = (prefix: string): string => verdicts.get(scenario(all, prefix).name)!

  it('router advertisements and IPv6 routes matter, IPv4 routes do not', () => {
    expect(level('ipv6 router advertisement (new')).toBe('soft')
    expect(level('ipv6 router advertisement repeated')).toBe('soft') // same line as the add: look again
    expect(level('ipv6 router advertisement with router lifetime 0')).toBe('soft')
    expect(level('ipv6 default route via')).toBe('soft')
    expect(level('default route replaced')).toBe('none')
    expect(level('route add 203.0.113.0/24')).toBe('none')
    expect(level('address add 192.168.50.3')).toBe('none')
    expect(level('eth0 carrier lost')).toBe('hard') // links matter to both families
  })
})

describe('ip route get / ip link show (real captures)', () => {
  const got = lookups(readFixture('ip-lookups-linux.txt'))

  it('parses the route to the bastion, IPv4 and IPv6', () => {
    const v4 = got.find((l) => l.command === 'ip -o route get 203.0.113.7' && l.exit === 0)!
    expect(parseIpRouteGet(v4.output)).toEqual({ dev: 'eth0', via: '192.168.50.1', src: '192.168.50.2' })
    const v6 = got.find((l) => l.command === 'ip -o route get 2001:db8:77::7')!
    expect(parseIpRouteGet(v6.output)).toEqual({ dev: 'eth0', via: '2001:db8:50::1', src: '2001:db8:50::2' })
    expect(parseIpRouteGet('10.0.0.5 dev eth0 src 10.0.0.2 uid 1000 \\    cache')).toEqual({ dev: 'eth0', via: undefined, src: '10.0.0.2' })
  })

  it('tells "no route" from other failures', () => {
    const none = got.find((l) => l.command === 'ip -o route get 203.0.113.7' && l.exit !== 0)!
    expect(none.exit).toBe(2)
    expect(isNoRouteError(none.output)).toBe(true)
    expect(isNoRouteError('Error: any valid prefix is expected rather than "x".')).toBe(false)
  })

  it('reads every link, with carrier state', () => {
    const lists = got.filter((l) => l.command === 'ip -o link show')
    const [up, down, noCarrier] = lists.map((l) => parseIpLinkList(l.output).find((x) => x.name === 'eth0')!)
    expect(up).toMatchObject({ index: eth0, up: true, running: true })
    expect(down).toMatchObject({ index: eth0, up: false, running: false })
    expect(noCarrier).toMatchObject({ index: eth0, up: true, running: false })
    expect(parseIpLinkList(lists[0].output).map((l) => l.name)).toEqual(['lo', 'eth0', 'eth1'])
  })
})
