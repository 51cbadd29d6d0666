import { describe, expect, it } from 'vitest'
import type { BastionPath, NetEvent } from '../../../src/platform/os/net-events'
import { darwinPathQuery, type RunResult } from '../../../src/platform/os/net-path'
import {
  DarwinRouteMonitorParser, isNoRouteErrorDarwin, maskLength, parseIfconfigState, parseRouteGetDarwin, routeGetArgvDarwin,
} from '../../../src/platform/os/route-monitor-darwin'
import { readFixture, scenario, scenarios } from './fixtures'
import { Replay } from './replay'

const all = scenarios(readFixture('route-monitor-darwin.txt'))
const parse = (lines: string[]): NetEvent[] => {
  const p = new DarwinRouteMonitorParser()
  return lines.flatMap((l) => p.push(l))
}
const events = (prefix: string): NetEvent[] => parse(scenario(all, prefix).lines)

describe('route -n monitor blocks', () => {
  it('reads the real capture: defaults deleted and re-added, an empty IFP kept in place', () => {
    expect(events('REAL [blog]')).toEqual([
      { kind: 'route', deleted: true, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, dev: 'en5', via: '172.20.10.1', cloned: false },
      { kind: 'route', deleted: true, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, dev: 'en1', via: '11.136.160.254', cloned: false },
      { kind: 'route', deleted: false, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, dev: undefined, via: '11.136.160.254', cloned: false },
      { kind: 'route', deleted: false, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, dev: undefined, via: '172.20.10.1', cloned: false },
    ])
  })

  it('reads RTM_IFINFO as a link event by index (real lines)', () => {
    expect(events('REAL [rws]')).toEqual([
      { kind: 'link', deleted: false, index: 5, up: true, running: true },
      { kind: 'link', deleted: false, index: 5, up: true, running: true },
      { kind: 'link', deleted: false, index: 12, up: true, running: true },
      { kind: 'link', deleted: false, index: 12, up: true, running: true },
    ])
    expect(events('CONSTRUCTED Wi-Fi turned off')[0]).toMatchObject({ index: 6, up: false, running: false })
  })

  it('ignores misses, metric reports and losing; marks clones', () => {
    expect(events('CONSTRUCTED lookups that fail')).toEqual([])
    expect(events('CONSTRUCTED cloned').map((e) => e.kind === 'route' && e.cloned)).toEqual([true, true])
    expect(events('REAL [n0]')).toEqual([
      { kind: 'route', deleted: false, family: 6, type: 'unicast', network: 'fe80::b476:66ff:fe30:c8f6', prefixLen: 128, dev: undefined, via: undefined, cloned: false },
    ])
  })

  it('reads addresses from IFA with the interface from IFP, and IPv6 routes', () => {
    const [del, , add] = events('CONSTRUCTED Wi-Fi joins')
    expect(del).toEqual({ kind: 'addr', deleted: true, dev: 'en0', family: 4, address: '192.168.1.20' })
    expect(add).toEqual({ kind: 'addr', deleted: false, dev: 'en0', family: 4, address: '10.0.0.33' })
    const [ra, slaac] = events('CONSTRUCTED IPv6 router advertisement')
    expect(ra).toMatchObject({ family: 6, network: '::', prefixLen: 0, via: 'fe80::1%en0', dev: 'en0' })
    expect(slaac).toMatchObject({ kind: 'addr', family: 6, address: '2001:db8:51::20', dev: 'en0' })
    expect(events('CONSTRUCTED a route to the bastion')[0]).toMatchObject({ network: '203.0.113.0', prefixLen: 24, via: '192.168.1.254' })
  })

  it('turns a block it cannot read into a gap (look again), and survives a message cut short', () => {
    const p = new DarwinRouteMonitorParser()
    expect(p.push('RTM_ADD: Add Route: len 140, pid: 0, seq 1, errno 0, flags:<UP,GATEWAY,STATIC>')).toEqual([])
    p.push('sockaddrs: <DST,GATEWAY,NETMASK>')
    expect(p.push(' 203.0.113.0 192.168.1.254 (0) 0 ffff ff00')).toEqual([{ kind: 'gap', why: 'unparsed RTM_ADD' }])
    p.push('RTM_DELETE: Delete Route: len 140, pid: 0, seq 2, errno 0, flags:<GATEWAY,DONE,STATIC>')
    p.push('got message of size 112 on Tue Sep 30 07:44:00 2025') // the rest never came
    expect(p.push(' 203.0.113.0 192.168.1.254 255.255.255.0')).toEqual([])
    expect(p.push('routing message version 9 not understood')).toEqual([{ kind: 'gap', why: 'routing message version 9 not understood' }])
  })

  it('mask lengths', () => {
    expect(maskLength('255.255.255.0')).toBe(24)
    expect(maskLength('255.255.0.0')).toBe(16)
    expect(maskLength('default')).toBe(0)
    expect(maskLength('ffff:ffff:ffff:ffff::')).toBe(64)
    expect(maskLength('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')).toBe(128)
    expect(maskLength('255.0.255.0')).toBeUndefined()
    expect(maskLength('(0) 0 ffff')).toBeUndefined()
  })
})

describe('relevance of each scenario (IPv4 bastion 203.0.113.7 via en0, if# 6)', () => {
  const path: BastionPath = { dev: 'en0', index: 6, via: '192.168.1.1', src: '192.168.1.20', up: true }
  const level = (prefix: string, p: BastionPath = path, bastion = '203.0.113.7', opts = {}): string =>
    new Replay(bastion, p, opts).run(events(prefix)).level

  it.each([
    ['REAL [blog]', 'soft'],
    ['REAL [n0]', 'none'],
    ['CONSTRUCTED lookups that fail', 'none'],
    ['CONSTRUCTED cloned', 'none'],
    ['CONSTRUCTED a VPN adds', 'none'],
    ['CONSTRUCTED Wi-Fi joins', 'hard'],
    ['CONSTRUCTED Wi-Fi turned off', 'hard'],
    ['CONSTRUCTED a route to the bastion', 'soft'],
    ['CONSTRUCTED IPv6 router advertisement', 'none'],
  ])('%s → %s', (name, expected) => {
    expect(level(name)).toBe(expected)
  })

  it('flag churn on the path interface (real, if# 5) is not a change', () => {
    expect(level('REAL [rws]', { ...path, index: 5 })).toBe('none')
  })

  it('an IPv6 bastion sees the router advertisement', () => {
    const v6: BastionPath = { dev: 'en0', index: 6, via: 'fe80::1%en0', src: '2001:db8:51::20', up: true }
    expect(level('CONSTRUCTED IPv6 router advertisement', v6, '2001:db8:77::7')).toBe('soft')
    expect(level('CONSTRUCTED Wi-Fi joins', v6, '2001:db8:77::7')).toBe('none')
  })
})

describe('route -n get / ifconfig', () => {
  // Documented output (real-world-systems route(1) notes; a VirtualBox host-only network).
  const viaGateway = '   route to: 192.0.43.10\ndestination: default\n       mask: default\n    gateway: 192.168.1.1\n  interface: en1\n      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>\n recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire\n       0         0         0         0         0         0      1500         0 \n'
  const onLink = 'route to: 192.168.50.114\ndestination: 192.168.50.0\nmask: 255.255.255.0\ninterface: vboxnet0\nflags: <UP,DONE,CLONING,STATIC,PRCLONING>\n'

  it('reads interface and gateway', () => {
    expect(parseRouteGetDarwin(viaGateway)).toEqual({ dev: 'en1', via: '192.168.1.1' })
    expect(parseRouteGetDarwin(onLink)).toEqual({ dev: 'vboxnet0', via: undefined })
    expect(parseRouteGetDarwin('')).toBeUndefined()
    expect(isNoRouteErrorDarwin('route: writing to routing socket: not in table')).toBe(true)
    expect(routeGetArgvDarwin('2001:db8::1')).toEqual(['route', '-n', 'get', '-inet6', '2001:db8::1'])
  })

  it('reads link state from ifconfig', () => {
    expect(parseIfconfigState('en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n\tstatus: active\n')).toEqual({ up: true, running: true })
    expect(parseIfconfigState('en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n\tstatus: inactive\n')).toEqual({ up: true, running: false })
    expect(parseIfconfigState('en0: flags=8822<BROADCAST,SMART,SIMPLEX,MULTICAST> mtu 1500\n')).toEqual({ up: false, running: false })
    expect(parseIfconfigState('ifconfig: interface en9 does not exist')).toBeUndefined()
  })

  it('darwinPathQuery combines route get, ifconfig, the index and the interface address', async () => {
    const calls: string[][] = []
    const run = async (argv: readonly string[]): Promise<RunResult> => {
      calls.push([...argv])
      if (argv[0] === 'route') return { code: 0, stdout: viaGateway, stderr: '' }
      return { code: 0, stdout: 'en1: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n\tstatus: active\n', stderr: '' }
    }
    const ifs = () => ({ en1: [
      { address: 'fe80::1', family: 'IPv6', internal: false },
      { address: '192.168.1.20', family: 'IPv4', internal: false },
    ] as never })
    const snap = await darwinPathQuery(run, (n) => (n === 'en1' ? 7 : undefined), ifs)('192.0.43.10')
    expect(snap.path).toEqual({ dev: 'en1', via: '192.168.1.1', src: '192.168.1.20', index: 7, up: true })
    expect(snap.links).toEqual([{ index: 7, name: 'en1', up: true, running: true }])
    expect(calls).toEqual([['route', '-n', 'get', '192.0.43.10'], ['ifconfig', 'en1']])
    const none = await darwinPathQuery(async () => ({ code: 1, stdout: '', stderr: 'route: writing to routing socket: not in table\n' }))('10.9.9.9')
    expect(none).toEqual({ path: undefined, links: [] })
    await expect(darwinPathQuery(async () => ({ code: 1, stdout: '', stderr: 'route: bad address\n' }))('10.9.9.9')).rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
  })
})
