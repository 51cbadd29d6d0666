import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { cleanupStale, scanKernelObjects } from '../../../src/platform/helper/cleanup'
import { firewallFor, selectMethod } from '../../../src/platform/firewall/choose-method'
import { isMissingObjectError } from '../../../src/platform/firewall/executor'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import { parseRequest } from '../../../src/platform/helper/protocol'
import { specToWire } from '../../../src/platform/helper/protocol-wire'
import { tunFirewall, tunPlan } from '../../../src/platform/firewall/tun'
import { isTunTable, TUN_TABLE_BASE, tunDeviceName, tunRevert, tunTable } from '../../../src/platform/firewall/tun-naming'
import { parseTunLeftovers } from '../../../src/platform/firewall/tun-scan'
import type { CaptureSpec } from '../../../src/platform/firewall/types'

const spec = (include: string[], exclude: string[] = [], over: Partial<CaptureSpec> = {}): CaptureSpec => ({
  instanceId: '1a2b3c4d',
  listenPort: 0,
  include: include.map(parseCidr),
  exclude: exclude.map(parseCidr),
  tunOwner: 1000,
  ...over,
})
const DEV = 'st1a2b3c4d'
const T = String(tunTable('1a2b3c4d'))

describe('tun naming', () => {
  it('device st<id>; ids that cannot name an interface are refused', () => {
    expect(tunDeviceName('1a2b3c4d')).toBe(DEV)
    expect(tunDeviceName('a'.repeat(13))).toHaveLength(15)
    expect(() => tunDeviceName('a'.repeat(14))).toThrow(/at most 13/)
    expect(() => tunDeviceName('A;x')).toThrow()
  })

  it('the table is a deterministic 24-bit hash in our range, different per id', () => {
    expect(tunTable('1a2b3c4d')).toBe(tunTable('1a2b3c4d'))
    const tables = new Set(['a', 'b', 'ab', 'ba', '1a2b3c4d', '1a2b3c4e'].map(tunTable))
    expect(tables.size).toBe(6)
    for (const t of tables) expect(isTunTable(t)).toBe(true)
    expect(isTunTable(TUN_TABLE_BASE - 1)).toBe(false)
    expect(isTunTable(254)).toBe(false)
  })
})

describe('tun plan', () => {
  it('IPv4: device owned by the uid, alias, mtu, address, up, routes in table T, rule last', () => {
    const p = tunPlan(spec(['10.0.0.0/16'], ['10.0.5.0/24', '192.168.1.7/32']))
    expect(p.apply).toEqual([
      ['ip', 'tuntap', 'add', 'dev', DEV, 'mode', 'tun', 'user', '1000'],
      ['ip', 'link', 'set', 'dev', DEV, 'alias', 'subnet-tunnel-1a2b3c4d'],
      // strict source validation; no IPv6 at all on an IPv4-only device (no RA, no v6 sources)
      ['sysctl', '-q', '-w', `net.ipv4.conf.${DEV}.rp_filter=1`],
      ['sysctl', '-q', '-e', '-w', `net.ipv6.conf.${DEV}.disable_ipv6=1`],
      ['ip', 'link', 'set', 'dev', DEV, 'mtu', '65535'],
      ['ip', '-4', 'addr', 'add', '169.254.77.1/30', 'dev', DEV],
      ['ip', 'link', 'set', 'dev', DEV, 'up'],
      // the exclude inside the include becomes a throw route; 192.168.1.7 (a local address
      // outside every include) is left out
      ['ip', '-4', 'route', 'add', 'throw', '10.0.5.0/24', 'table', T],
      ['ip', '-4', 'route', 'add', '10.0.0.0/16', 'dev', DEV, 'table', T],
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'lookup', T],
    ])
    expect(p.revert).toEqual([
      ['ip', '-4', 'rule', 'del', 'priority', '5354', 'lookup', T],
      ['ip', '-4', 'route', 'flush', 'table', T],
      ['ip', 'link', 'del', 'dev', DEV],
    ])
  })

  it('--owner-only: the rules route only the owner\'s sockets (uidrange), and the reverse-path check (uid 0) from the device address; the revert deletes both', () => {
    const p = tunPlan({ ...spec(['10.0.0.0/8', 'fd00::/64']), ownerUid: 1001 })
    expect(p.apply.filter((a) => a.includes('rule'))).toEqual([
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'uidrange', '1001-1001', 'lookup', T],
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'from', '169.254.77.1', 'uidrange', '0-0', 'lookup', T],
      ['ip', '-6', 'rule', 'add', 'priority', '5354', 'uidrange', '1001-1001', 'lookup', T],
    ])
    const del4 = ['ip', '-4', 'rule', 'del', 'priority', '5354', 'lookup', T]
    expect(p.revert.filter((a) => a.includes('rule'))).toEqual([del4, del4, ['ip', '-6', 'rule', 'del', 'priority', '5354', 'lookup', T]])
    // and from the journal record alone
    expect(tunFirewall.revert({ id: '1a2b3c4d', families: [4, 6], ownerUid: 1001 })).toEqual(p.revert)
    expect(() => tunPlan({ ...spec(['10.0.0.0/8']), ownerUid: -1 })).toThrow(/owner uid/)
  })

  describe('exec --only: a mark on the cgroup\'s packets, routed by fwmark', () => {
    const M = `0x${Number(T).toString(16)}`
    const only = (match: 'nft' | 'iptables', over: Partial<CaptureSpec> = {}): CaptureSpec =>
      spec(['10.0.0.0/8', 'fd00::/64'], [], { cgroup: 'subnet-tunnel-1a2b3c4d', cgroupMatch: match, ...over })

    it('iptables: src_valid_mark, then per family a mangle chain (mark + connmark), OUTPUT jump by cgroup, PREROUTING jump by device and connmark; rules by fwmark last', () => {
      const p = tunPlan(only('iptables'))
      const i = p.apply.findIndex((a) => a[0] === 'sysctl' && a[3]?.includes('src_valid_mark'))
      expect(p.apply.slice(i)).toEqual([
        ['sysctl', '-q', '-w', `net.ipv4.conf.${DEV}.src_valid_mark=1`],
        ...([['iptables', 4], ['ip6tables', 6]] as const).flatMap(([bin]) => [
          [bin, '-w', '-t', 'mangle', '-N', 'subnet-tunnel-1a2b3c4d'],
          [bin, '-w', '-t', 'mangle', '-A', 'subnet-tunnel-1a2b3c4d', '-j', 'MARK', '--set-mark', M],
          [bin, '-w', '-t', 'mangle', '-A', 'subnet-tunnel-1a2b3c4d', '-j', 'CONNMARK', '--set-mark', M],
          [bin, '-w', '-t', 'mangle', '-I', 'OUTPUT', '1', '-m', 'cgroup', '--path', 'subnet-tunnel-1a2b3c4d', '-j', 'subnet-tunnel-1a2b3c4d'],
          [bin, '-w', '-t', 'mangle', '-I', 'PREROUTING', '1', '-i', DEV, '-m', 'connmark', '--mark', M, '-j', 'subnet-tunnel-1a2b3c4d'],
        ]),
        ['ip', '-4', 'rule', 'add', 'priority', '5354', 'fwmark', M, 'lookup', T],
        ['ip', '-6', 'rule', 'add', 'priority', '5354', 'fwmark', M, 'lookup', T],
      ])
      // the mark part goes first, then what tun always removes; the journal record gives the same
      expect(p.revert).toEqual([
        ...(['iptables', 'ip6tables'] as const).flatMap((bin) => [
          [bin, '-w', '-t', 'mangle', '-D', 'PREROUTING', '-i', DEV, '-m', 'connmark', '--mark', M, '-j', 'subnet-tunnel-1a2b3c4d'],
          [bin, '-w', '-t', 'mangle', '-D', 'OUTPUT', '-m', 'cgroup', '--path', 'subnet-tunnel-1a2b3c4d', '-j', 'subnet-tunnel-1a2b3c4d'],
          [bin, '-w', '-t', 'mangle', '-F', 'subnet-tunnel-1a2b3c4d'],
          [bin, '-w', '-t', 'mangle', '-X', 'subnet-tunnel-1a2b3c4d'],
        ]),
        ...tunRevert('1a2b3c4d', [4, 6]),
      ])
      expect(tunFirewall.revert({ id: '1a2b3c4d', families: [4, 6], cgroup: 'subnet-tunnel-1a2b3c4d', cgroupMatch: 'iptables' })).toEqual(p.revert)
    })

    it('nft: one transaction (route chain on output, prerouting restore); --owner-only narrows the mark to the uid, not the rule (the reverse-path lookup carries uid 0)', () => {
      const p = tunPlan(only('nft', { ownerUid: 1001 }))
      const nft = p.apply.filter((a) => a[0] === 'nft')
      expect(nft).toEqual([[
        'nft', 'create', 'table', 'inet', 'subnet-tunnel-1a2b3c4d', ';',
        'add', 'chain', 'inet', 'subnet-tunnel-1a2b3c4d', 'output', '{', 'type', 'route', 'hook', 'output', 'priority', '-150', ';', 'policy', 'accept', ';', '}', ';',
        'add', 'rule', 'inet', 'subnet-tunnel-1a2b3c4d', 'output', 'socket', 'cgroupv2', 'level', '1', '"subnet-tunnel-1a2b3c4d"', 'meta', 'skuid', '1001',
        'meta', 'mark', 'set', M, 'ct', 'mark', 'set', M, ';',
        'add', 'chain', 'inet', 'subnet-tunnel-1a2b3c4d', 'prerouting', '{', 'type', 'filter', 'hook', 'prerouting', 'priority', '-150', ';', 'policy', 'accept', ';', '}', ';',
        'add', 'rule', 'inet', 'subnet-tunnel-1a2b3c4d', 'prerouting', 'iifname', `"${DEV}"`, 'ct', 'mark', M, 'meta', 'mark', 'set', M,
      ]])
      expect(p.apply.filter((a) => a.includes('rule') && a[0] === 'ip')).toEqual([
        ['ip', '-4', 'rule', 'add', 'priority', '5354', 'fwmark', M, 'lookup', T],
        ['ip', '-6', 'rule', 'add', 'priority', '5354', 'fwmark', M, 'lookup', T],
      ])
      expect(p.revert).toEqual([['nft', 'delete', 'table', 'inet', 'subnet-tunnel-1a2b3c4d'], ...tunRevert('1a2b3c4d', [4, 6])])
      // iptables with --owner-only: the uid on the OUTPUT jump, and its revert matches it
      const ipt = tunPlan(only('iptables', { ownerUid: 1001 }))
      const jump = ['-m', 'cgroup', '--path', 'subnet-tunnel-1a2b3c4d', '-m', 'owner', '--uid-owner', '1001', '-j', 'subnet-tunnel-1a2b3c4d']
      expect(ipt.apply).toContainEqual(['iptables', '-w', '-t', 'mangle', '-I', 'OUTPUT', '1', ...jump])
      expect(ipt.revert).toContainEqual(['iptables', '-w', '-t', 'mangle', '-D', 'OUTPUT', ...jump])
    })

    it('a root-owned device gets src_valid_mark too (a strict `all` rp_filter applies to it); a cgroup without a match is refused', () => {
      expect(tunPlan(only('nft', { tunOwner: 0 })).apply.filter((a) => a[0] === 'sysctl')).toEqual([['sysctl', '-q', '-w', `net.ipv4.conf.${DEV}.src_valid_mark=1`]])
      expect(() => tunPlan(spec(['10.0.0.0/8'], [], { cgroup: 'subnet-tunnel-1a2b3c4d' }))).toThrow(/cgroup match/)
      expect(() => tunPlan(spec(['10.0.0.0/8'], [], { cgroup: 'subnet-tunnel-1a2b3c4d', cgroupMatch: 'pf' as never }))).toThrow(/cgroup match/)
    })

    it('preflight warns about includes this host cannot route without the tunnel (connect fails before the mark)', async () => {
      const x = new FakeExecutor().on((a) => a.join(' ') === 'ip -6 route get fd00::', { code: 2, stderr: 'RTNETLINK answers: Network is unreachable' })
      const warnings: string[] = []
      await tunFirewall.preflight!(only('iptables'), { exec: x, warn: (m) => warnings.push(m) })
      expect(x.calls).toContainEqual(['ip', '-4', 'route', 'get', '10.0.0.0'])
      expect(warnings).toEqual([expect.stringMatching(/no route to fd00::\/64 outside the tunnel.*Network is unreachable/)])
      const plain = new FakeExecutor()
      await tunFirewall.preflight!(spec(['10.0.0.0/8']), { exec: plain, warn: (m) => warnings.push(m) })
      expect(plain.calls.filter((a) => a.includes('get'))).toEqual([])
    })

    it('the helper protocol takes a cgroup with tun only with its match, and a match only there', () => {
      const line = (method: string, extra: Record<string, unknown>) =>
        JSON.stringify({ id: 1, op: 'apply', method, spec: { instanceId: '1a2b3c4d', listenPort: method === 'tun' ? 0 : 4000, include: ['10.0.0.0/8'], exclude: [], ...extra } })
      const cg = { cgroup: 'subnet-tunnel-1a2b3c4d' }
      expect(parseRequest(line('tun', { ...cg, tunOwner: 0, cgroupMatch: 'iptables' }))).toMatchObject({ spec: { cgroup: cg.cgroup, cgroupMatch: 'iptables' } })
      expect(() => parseRequest(line('tun', { ...cg, tunOwner: 0 }))).toThrow(/cgroupMatch must be nft or iptables/)
      expect(() => parseRequest(line('tun', { ...cg, tunOwner: 0, cgroupMatch: 'ebpf' }))).toThrow(/cgroupMatch must be nft or iptables/)
      expect(() => parseRequest(line('tun', { tunOwner: 0, cgroupMatch: 'nft' }))).toThrow(/cgroupMatch is for method tun with spec.cgroup only/)
      expect(() => parseRequest(line('nft', { ...cg, cgroupMatch: 'nft' }))).toThrow(/cgroupMatch is for method tun with spec.cgroup only/)
      // the client sends it
      expect(specToWire(only('nft'))).toMatchObject({ cgroupMatch: 'nft' })
    })
  })

  it('IPv4 + IPv6: a v6 address (nodad), v6 routes and a v6 rule; the revert covers both', () => {
    const p = tunPlan(spec(['10.0.0.0/8', 'fd00::/64'], ['fd00::5']))
    // IPv6 stays on, but a Router Advertisement or a redirect written into the device is ignored
    expect(p.apply.slice(2, 4)).toEqual([
      ['sysctl', '-q', '-w', `net.ipv4.conf.${DEV}.rp_filter=1`],
      ['sysctl', '-q', '-w', `net.ipv6.conf.${DEV}.accept_ra=0`, `net.ipv6.conf.${DEV}.accept_redirects=0`],
    ])
    expect(p.apply).toContainEqual(['ip', '-6', 'addr', 'add', 'fd7a:5354::1/126', 'dev', DEV, 'nodad'])
    expect(p.apply).toContainEqual(['ip', '-6', 'route', 'add', 'throw', 'fd00::5/128', 'table', T])
    expect(p.apply).toContainEqual(['ip', '-6', 'route', 'add', 'fd00::/64', 'dev', DEV, 'table', T])
    expect(p.apply.slice(-2)).toEqual([
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'lookup', T],
      ['ip', '-6', 'rule', 'add', 'priority', '5354', 'lookup', T],
    ])
    expect(p.revert).toEqual(tunRevert('1a2b3c4d', [4, 6]))
    expect(p.revert.filter((a) => a[1] === '-6')).toHaveLength(2)
  })

  it("root's own device gets no sysctls: only root can write into it (and a read-only /proc/sys stays usable)", () => {
    const p = tunPlan(spec(['10.0.0.0/8', 'fd00::/64'], [], { tunOwner: 0 }))
    expect(p.apply.filter((a) => a[0] === 'sysctl')).toEqual([])
    expect(p.apply[0]).toEqual(['ip', 'tuntap', 'add', 'dev', DEV, 'mode', 'tun', 'user', '0'])
  })

  it('the bastion inside 0/0 gets a throw route (it keeps its normal route)', () => {
    const p = tunPlan(spec(['0/0'], ['203.0.113.9/32']))
    const routes = p.apply.filter((a) => a[2] === 'route')
    expect(routes).toEqual([
      ['ip', '-4', 'route', 'add', 'throw', '203.0.113.9/32', 'table', T],
      ['ip', '-4', 'route', 'add', '0.0.0.0/0', 'dev', DEV, 'table', T],
    ])
  })

  it('the same network included and excluded is excluded (one route, not two)', () => {
    const routes = tunPlan(spec(['10.0.0.0/8'], ['10.0.0.0/8'])).apply.filter((a) => a[2] === 'route')
    expect(routes).toEqual([['ip', '-4', 'route', 'add', 'throw', '10.0.0.0/8', 'table', T]])
  })

  it('captured nameservers become host routes into the device; an excluded one (the bastion) does not', () => {
    const s = spec(['10.0.0.0/16'], ['203.0.113.9/32'], {
      dns: { servers: ['192.168.1.1', '10.0.0.2', '203.0.113.9', 'fd00::53'], port: 4053, exemptSourcePorts: [] },
    })
    const routes = tunPlan(s).apply.filter((a) => a[2] === 'route').map((a) => a.slice(1).join(' '))
    expect(routes).toEqual([
      `-4 route add throw 203.0.113.9/32 table ${T}`,
      `-4 route add 192.168.1.1/32 dev ${DEV} table ${T}`,
      `-4 route add 10.0.0.2/32 dev ${DEV} table ${T}`,
      `-4 route add 10.0.0.0/16 dev ${DEV} table ${T}`,
      // an IPv6 nameserver brings the IPv6 family in, like nat's ip6tables chain
      `-6 route add fd00::53/128 dev ${DEV} table ${T}`,
    ])
  })

  it('refuses a spec without a valid owner or with a long id', () => {
    expect(() => tunPlan(spec(['10.0.0.0/8'], [], { tunOwner: undefined }))).toThrow(/owner/)
    expect(() => tunPlan(spec(['10.0.0.0/8'], [], { tunOwner: -1 }))).toThrow(/owner/)
    expect(() => tunPlan(spec(['10.0.0.0/8'], [], { tunOwner: 2 ** 32 - 1 }))).toThrow(/owner/)
    expect(() => tunPlan(spec(['10.0.0.0/8'], [], { instanceId: 'a'.repeat(14) }))).toThrow(/TUN device/)
  })

  it('the tun revert is rebuilt from id and families alone', () => {
    expect(firewallFor('tun').revert({ id: '1a2b3c4d', families: [4] })).toEqual(tunPlan(spec(['10.0.0.0/8'])).revert)
  })

  it('missing objects are tolerated on revert: ip link del, route flush, rule del', () => {
    expect(isMissingObjectError('Cannot find device "st1a2b3c4d"')).toBe(true)
    expect(isMissingObjectError('Error: ipv4: FIB table does not exist.\nFlush terminated')).toBe(true)
    expect(isMissingObjectError('RTNETLINK answers: No such file or directory')).toBe(true)
    expect(isMissingObjectError('RTNETLINK answers: Operation not permitted')).toBe(false)
  })
})

describe('tun probe', () => {
  it('ok with /dev/net/tun and ip rule (v4, v6 when asked)', async () => {
    const x = new FakeExecutor()
    expect(await tunFirewall.probe(x, { ipv6: true })).toEqual({ ok: true })
    expect(x.calls).toEqual([
      ['test', '-c', '/dev/net/tun'], ['sysctl', '-n', 'net.ipv4.conf.all.rp_filter'], ['ip', '-4', 'rule', 'show'], ['ip', '-6', 'rule', 'show'],
    ])
    const noSysctl = new FakeExecutor().on((a) => a[0] === 'sysctl', { code: 127 })
    expect(await tunFirewall.probe(noSysctl)).toMatchObject({ ok: false, why: 'sysctl not found', hint: expect.stringMatching(/procps/) })
  })

  it('no /dev/net/tun, no ip, no IPv6 policy routing', async () => {
    const noDev = new FakeExecutor().on((a) => a[0] === 'test', { code: 1 })
    expect(await tunFirewall.probe(noDev)).toMatchObject({ ok: false, why: '/dev/net/tun does not exist', hint: expect.stringMatching(/modprobe tun/) })
    const noIp = new FakeExecutor().on((a) => a[0] === 'ip', { code: 127 })
    expect(await tunFirewall.probe(noIp)).toMatchObject({ ok: false, why: 'ip not found' })
    const noV6 = new FakeExecutor().on((a) => a[1] === '-6', { code: 2, stderr: 'RTNETLINK answers: Address family not supported by protocol' })
    expect(await tunFirewall.probe(noV6, { ipv6: false })).toEqual({ ok: true })
    expect(await tunFirewall.probe(noV6, { ipv6: true })).toMatchObject({ ok: false, why: expect.stringMatching(/IPv6 policy routing unusable: RTNETLINK/) })
  })

  it('auto never probes or picks tun; --method tun probes only tun', async () => {
    const asked: string[] = []
    const probe = async (m: string) => {
      asked.push(m)
      return m === 'tun' ? ({ ok: true } as const) : ({ ok: false, why: 'no' } as const)
    }
    await expect(selectMethod('auto', probe, { platform: 'linux' })).rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
    expect(asked).toEqual(['nft', 'nat'])
    asked.length = 0
    expect(await selectMethod('tun', probe, { platform: 'linux' })).toMatchObject({ method: 'tun' })
    expect(asked).toEqual(['tun'])
  })
})

describe('tun protocol', () => {
  const line = (method: string, s: Record<string, unknown>): string =>
    JSON.stringify({ id: 3, op: 'apply', method, spec: { instanceId: 'ab12', listenPort: 0, include: ['10.0.0.0/8'], exclude: [], ...s } })
  const err = (l: string): string => {
    try {
      parseRequest(l)
    } catch (e) {
      return (e as Error).message
    }
    return 'accepted'
  }

  it('tun: owner required, an integer 0..2^32-2; listenPort 0 allowed', () => {
    expect(parseRequest(line('tun', { tunOwner: 1000 }))).toMatchObject({ method: 'tun', spec: { tunOwner: 1000, listenPort: 0 } })
    expect(parseRequest(line('tun', { tunOwner: 0 }))).toMatchObject({ spec: { tunOwner: 0 } })
    expect(parseRequest(line('tun', { tunOwner: 2 ** 32 - 2 }))).toMatchObject({ spec: { tunOwner: 2 ** 32 - 2 } })
    for (const bad of [undefined, -1, 1.5, '1000', 2 ** 32 - 1, 2 ** 32, null, true]) {
      expect(err(line('tun', { tunOwner: bad })), String(bad)).toMatch(/tunOwner must be an integer/)
    }
  })

  it('tun: ids longer than 13 are refused; other methods refuse tunOwner and listenPort 0', () => {
    expect(err(line('tun', { tunOwner: 1, instanceId: 'a'.repeat(14) }))).toMatch(/at most 13/)
    expect(err(line('nft', { tunOwner: 1, listenPort: 4000 }))).toMatch(/tunOwner is for method tun only/)
    expect(err(line('nat', { listenPort: 0 }))).toMatch(/listenPort must be an integer 1\.\.65535/)
  })

  it('specToWire round-trips tunOwner', () => {
    const s = spec(['10.0.0.0/8', 'fd00::/64'], ['10.1.0.0/16'], { instanceId: 'ab12' })
    const r = parseRequest(JSON.stringify({ id: 1, op: 'apply', method: 'tun', spec: specToWire(s) }))
    expect(r).toEqual({ id: 1, op: 'apply', method: 'tun', spec: s })
  })
})

describe('tun in the helper and in cleanup', () => {
  const withJournal = async (fn: (j: Journal) => Promise<void>): Promise<void> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-tun-'))
    try {
      await fn(new Journal(dir))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
  const applyLine = (owner: number): string =>
    JSON.stringify({ id: 1, op: 'apply', method: 'tun', spec: { instanceId: '1a2b3c4d', listenPort: 0, include: ['10.0.0.0/8'], exclude: [], tunOwner: owner } })

  it('apply journals method tun, runs the plan, answers with the device; revert deletes it', () =>
    withJournal(async (journal) => {
      const x = new FakeExecutor()
      const s = new HelperServer({ exec: x, journal, netns: 7, pid: process.pid, mainPid: 1, allowTun: true })
      expect(await s.handleLine(applyLine(1000))).toEqual({ id: 1, ok: true, result: { method: 'tun', object: DEV, families: [4], steps: 9 } })
      const e = journal.list()[0]
      expect('entry' in e && e.entry).toMatchObject({ method: 'tun', families: [4] })
      // the table check and rp_filter of `all`, then the plan; no conntrack flush
      expect(x.calls.slice(0, 2)).toEqual([['ip', '-4', 'rule', 'show'], ['sysctl', '-n', 'net.ipv4.conf.all.rp_filter']])
      expect(x.calls.slice(2)).toEqual(tunPlan(spec(['10.0.0.0/8'])).apply)
      await s.handleLine('{"id":2,"op":"revert"}')
      expect(x.calls.slice(-3)).toEqual(tunRevert('1a2b3c4d', [4]))
      expect(journal.list()).toEqual([])
    }))

  it('refuses a table already looked up by some rule, and (under sudo) another user as owner', () =>
    withJournal(async (journal) => {
      const busy = new FakeExecutor().on((a) => a.join(' ') === 'ip -4 rule show', { stdout: `5354:\tfrom all lookup ${T}\n` })
      const s = new HelperServer({ exec: busy, journal, netns: 7, pid: process.pid, mainPid: 1, allowTun: true })
      expect(await s.handleLine(applyLine(1000))).toMatchObject({ ok: false, error: { code: 'HELPER', message: expect.stringMatching(/table .* already in use/) } })
      expect(busy.calls).toEqual([['ip', '-4', 'rule', 'show']])
      const x = new FakeExecutor()
      const sudo = new HelperServer({ exec: x, journal, netns: 7, pid: process.pid, mainPid: 1, callerUid: 1000, allowTun: true })
      expect(await sudo.handleLine(applyLine(1001))).toMatchObject({ ok: false, error: { message: expect.stringMatching(/only be owned by uid 1000/) } })
      expect(x.calls).toEqual([])
      expect(journal.list()).toEqual([])
      expect(await sudo.handleLine(applyLine(1000))).toMatchObject({ ok: true })
    }))

  it('a stale tun journal entry is reverted from its id', () =>
    withJournal(async (journal) => {
      journal.write({
        id: '1a2b3c4d', helperPid: 999999, helperStart: 'x', mainPid: 1, netns: 7, method: 'tun', families: [4, 6],
        revert: [['rm', '-rf', '/']], createdAt: new Date().toISOString(),
      })
      const x = new FakeExecutor()
      const r = await cleanupStale(x, { journal, netns: 7, isAlive: () => false, scanKernel: false })
      expect(r.removed).toEqual(['instance 1a2b3c4d (tun)'])
      expect(x.calls).toEqual(tunRevert('1a2b3c4d', [4, 6]))
    }))

  const LINKS = [
    '1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00',
    `2: ${DEV}: <NO-CARRIER,POINTOPOINT,MULTICAST,NOARP,UP> mtu 1500 qdisc pfifo_fast state DOWN mode DEFAULT group default qlen 500\\    link/none \\    alias subnet-tunnel-1a2b3c4d`,
    // a user's own interface called st…: no alias of ours, never touched
    '3: stuff: <POINTOPOINT,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 500\\    link/none ',
    // right prefix, wrong alias
    '4: stabc: <POINTOPOINT,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 500\\    link/none \\    alias subnet-tunnel-other',
  ].join('\n')
  const orphan = tunTable('deadbeef')

  it('the kernel scan finds our device (by alias) and a table left without its device', () => {
    const rules = `0:\tfrom all lookup local\n5354:\tfrom all lookup ${T}\n5354:\tfrom all lookup ${orphan}\n5354:\tfrom all lookup 100\n32766:\tfrom all lookup main\n`
    const routes = `throw 10.0.5.0/24 table ${orphan} \n10.0.0.0/16 dev ${DEV} table ${T} scope link\n`
    const found = parseTunLeftovers([LINKS, rules, rules, routes, ''])
    expect(found).toEqual([
      { id: '1a2b3c4d', table: Number(T), label: `tun link ${DEV}`, revert: tunRevert('1a2b3c4d', [4, 6]) },
      {
        table: orphan,
        label: `routing table ${orphan}`,
        revert: [
          ['ip', '-4', 'rule', 'del', 'priority', '5354', 'lookup', String(orphan)],
          ['ip', '-4', 'route', 'flush', 'table', String(orphan)],
          ['ip', '-6', 'rule', 'del', 'priority', '5354', 'lookup', String(orphan)],
          ['ip', '-6', 'route', 'flush', 'table', String(orphan)],
        ],
      },
    ])
    // IPv6 listing failed: no IPv6 steps
    expect(parseTunLeftovers([LINKS, rules, undefined, '', undefined])[0].revert).toEqual(tunRevert('1a2b3c4d', [4]))
  })

  it('the scan deletes as many rules as it found (--owner-only: two for IPv4), and finds exec --only\'s mangle chains with their jumps', () => {
    const rules4 = `5354:\tfrom all uidrange 1001-1001 lookup ${T}\n5354:\tfrom 169.254.77.1 uidrange 0-0 lookup ${T}\n5354:\tfrom all fwmark 0x1 lookup ${orphan}\n`
    const del = (f: 4 | 6, t: number | string) => ['ip', `-${f}`, 'rule', 'del', 'priority', '5354', 'lookup', String(t)]
    const M = `0x${Number(T).toString(16)}`
    const mangle = [
      '-P PREROUTING ACCEPT',
      '-N subnet-tunnel-1a2b3c4d',
      '-N someone-else',
      `-A PREROUTING -i ${DEV} -m connmark --mark ${M} -j subnet-tunnel-1a2b3c4d`,
      '-A OUTPUT -m cgroup --path subnet-tunnel-1a2b3c4d -j subnet-tunnel-1a2b3c4d',
      `-A subnet-tunnel-1a2b3c4d -j MARK --set-xmark ${M}/0xffffffff`,
    ].join('\n')
    const found = parseTunLeftovers([LINKS, rules4, '', '', '', mangle, undefined])
    expect(found[0].revert.filter((a) => a.includes('rule'))).toEqual([del(4, T), del(4, T), del(6, T)])
    expect(found[1].revert.filter((a) => a.includes('rule'))).toEqual([del(4, orphan), del(6, orphan)])
    expect(found[2]).toEqual({
      id: '1a2b3c4d',
      table: Number(T),
      label: 'iptables mangle subnet-tunnel-1a2b3c4d',
      revert: [
        ['iptables', '-w', '-t', 'mangle', '-D', 'PREROUTING', '-i', DEV, '-m', 'connmark', '--mark', M, '-j', 'subnet-tunnel-1a2b3c4d'],
        ['iptables', '-w', '-t', 'mangle', '-D', 'OUTPUT', '-m', 'cgroup', '--path', 'subnet-tunnel-1a2b3c4d', '-j', 'subnet-tunnel-1a2b3c4d'],
        ['iptables', '-w', '-t', 'mangle', '-F', 'subnet-tunnel-1a2b3c4d'],
        ['iptables', '-w', '-t', 'mangle', '-X', 'subnet-tunnel-1a2b3c4d'],
      ],
    })
    expect(found).toHaveLength(3)
  })

  it('cleanup removes unowned tun leftovers and keeps those of a live instance', () =>
    withJournal(async (journal) => {
      journal.write({
        id: '1a2b3c4d', helperPid: process.pid, helperStart: '', mainPid: 1, netns: 7, method: 'tun', families: [4],
        revert: [], createdAt: new Date().toISOString(),
      })
      const rules = `5354:\tfrom all lookup ${T}\n5354:\tfrom all lookup ${orphan}\n`
      const x = new FakeExecutor()
        .on((a) => a.join(' ') === 'ip -o link show', { stdout: LINKS })
        .on((a) => a.join(' ') === 'ip -4 rule show', { stdout: rules })
      expect((await scanKernelObjects(x, 'linux')).map((o) => o.label)).toEqual([`tun link ${DEV}`, `routing table ${orphan}`])
      const r = await cleanupStale(x, { journal, netns: 7, isAlive: (pid) => pid === process.pid, platform: 'linux' })
      expect(r.removed).toEqual([`routing table ${orphan}`])
      expect(x.calls.some((a) => a.includes('del') && a.includes(DEV))).toBe(false)
      expect(x.calls.some((a) => a.includes('del') && a.includes(T))).toBe(false)
    }))
})

describe('tun probe on macOS', () => {
  it('runs none of the Linux commands (the utun is created by the main process there)', async () => {
    const { probeTunOn } = await import('../../../src/platform/firewall/tun')
    const ran: string[][] = []
    const r = await probeTunOn('darwin')({ run: async (argv: readonly string[]) => { ran.push([...argv]); return { code: 1, stdout: '', stderr: '' } } })
    expect(r).toEqual({ ok: true })
    expect(ran).toEqual([])
  })
})
