/**
 * --auto-nets end to end, without the network: the command we run on the bastion, and for the
 * output of each kind of bastion (test/config/fixtures/remote-routes, see its README for which
 * were captured here and which transcribed) the networks chosen, every route dropped with its
 * reason, and the excludes. Rules in detail: auto-nets.test.ts; formats: remote-routes-parse.test.ts.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { chooseAutoNets } from '../../src/config/auto-nets'
import { formatCidr, parseCidr } from '../../src/config/cidr'
import { BASTION_ROUTES_COMMAND, MAX_ROUTES_OUTPUT, parseBastionRoutes, ROUTES_MARKER } from '../../src/config/remote-routes'
import { isTunnelError } from '../../src/errors'

const fixture = (name: string): string => readFileSync(join(__dirname, 'fixtures/remote-routes', name), 'utf8')

/** What the CLI would show: sources, chosen, dropped grouped by reason, excludes. */
function outcome(name: string, local: string[], dialled: string[]) {
  const routes = parseBastionRoutes(fixture(name))
  const choice = chooseAutoNets({ routes, bastionAddresses: dialled, localNetworks: local.map(parseCidr) })
  const dropped: Record<string, string[]> = {}
  for (const d of choice.dropped) {
    // Link-local addresses of the captured (linux-*) namespaces are random: show them as one shape.
    const net = name.startsWith('linux-') ? formatCidr(d.net).replace(/^fe80::[0-9a-f:]+\/128$/, 'fe80::*/128') : formatCidr(d.net)
    ;(dropped[d.reason] ??= []).push(net)
  }
  return {
    sources: routes.sources,
    chosen: choice.chosen.map((a) => formatCidr(a.net)),
    dropped,
    excludes: choice.excludes.map((e) => `${formatCidr(e.net)} ${e.reason}`),
  }
}

// The namespace of capture-linux.sh debian/nettools/busybox: what a bastion there reaches.
const DEBIAN_V4 = ['10.20.0.0/16', '10.30.0.0/16', '10.40.0.0/16', '10.50.0.0/24', '10.60.0.5/32', '10.70.0.0/16']
const DEBIAN_V4_TAIL = ['172.16.5.0/24', '172.16.6.0/24', '203.0.0.0/8']
const DEBIAN_V6 = ['2001:db8:5::/64', 'fd00:20::/64', 'fd00:30::/48', 'fd00:40::/48', 'fd00:70::/48']
const REJECTS = ['10.96.0.0/16', '10.97.0.0/16', '10.98.0.0/16', '10.99.0.0/16', 'fd00:97::/48', 'fd00:98::/48', 'fd00:99::/48']
const LOCAL = ['192.168.77.0/24']
const DIALLED = ['203.0.113.10', '2001:db8:1::10']

describe('auto-nets on real and transcribed bastion outputs', () => {
  it('Debian 12, iproute2 (captured): every kind of route', () => {
    expect(outcome('linux-debian12.txt', LOCAL, DIALLED)).toEqual({
      sources: { 4: 'ip4', 6: 'ip6' },
      chosen: [...DEBIAN_V4, ...DEBIAN_V4_TAIL, ...DEBIAN_V6],
      dropped: {
        'too-broad': ['0.0.0.0/1', '128.0.0.0/1', '2000::/3'],
        default: ['0.0.0.0/0', '::/0'],
        'bastion-address': ['10.20.0.1/32', '10.20.0.100/32', 'fd00:20::1/128'],
        'not-unicast': ['10.20.255.255/32', '239.1.0.0/16', 'ff05::/16'],
        duplicate: ['10.30.0.0/16'],
        covered: ['10.30.7.0/24'],
        'link-down': ['10.81.0.0/24'],
        reject: REJECTS,
        loopback: ['127.0.0.0/8'],
        'link-local': ['169.254.0.0/16', 'fe80::/64', 'fe80::/64', 'fe80::/64'],
        'local-network': ['192.168.77.0/24'],
        'link-to-us': ['203.0.113.0/24', '2001:db8:1::/64'],
        multicast: ['224.0.0.0/4'],
      },
      // 203.0.0.0/8 is kept, but not the link to us inside it.
      excludes: ['203.0.113.0/24 link-to-us'],
    })
  })

  it('the same host with net-tools only (captured): the same networks, less detail', () => {
    expect(outcome('linux-nettools-only.txt', LOCAL, DIALLED)).toEqual({
      sources: { 4: 'netstat', 6: 'route6' },
      // /proc/net/route has no linkdown: 10.81.0.0/24 is kept.
      chosen: [...DEBIAN_V4, '10.81.0.0/24', ...DEBIAN_V4_TAIL, ...DEBIAN_V6],
      dropped: {
        'too-broad': ['0.0.0.0/1', '128.0.0.0/1', '2000::/3'],
        default: ['0.0.0.0/0', '::/0', '::/0'],
        // No `src` in net-tools' IPv4 table: the bastion's /32s are merely inside its network.
        covered: ['10.20.0.1/32', '10.20.0.100/32', '10.30.7.0/24'],
        duplicate: ['10.30.0.0/16', 'fd00:70::/48'],
        reject: REJECTS,
        loopback: ['127.0.0.0/8'],
        'link-local': ['169.254.0.0/16', 'fe80::/64', 'fe80::/64', 'fe80::/64'],
        'local-network': ['192.168.77.0/24'],
        'link-to-us': ['203.0.113.0/24', '2001:db8:1::/64'],
        multicast: ['224.0.0.0/4', 'ff05::/16', 'ff00::/8', 'ff00::/8', 'ff00::/8'],
        'bastion-address': [
          'fd00:20::1/128', '::1/128', '2001:db8:1::10/128', 'fd00:20::1/128', 'fe80::*/128', 'fe80::*/128', 'fe80::*/128',
        ],
      },
      excludes: ['203.0.113.0/24 link-to-us'],
    })
  })

  it('the same host as Alpine answers, busybox applets (captured)', () => {
    const o = outcome('linux-busybox.txt', LOCAL, DIALLED)
    expect(o.sources).toEqual({ 4: 'ip4', 6: 'ip6' })
    // busybox ip prints neither linkdown nor multipath next hops; it lists ff00::/8 of the local table.
    expect(o.chosen).toEqual([...DEBIAN_V4, '10.81.0.0/24', ...DEBIAN_V4_TAIL, ...DEBIAN_V6])
    expect(o.dropped['not-unicast']).toEqual(['10.20.255.255/32', '239.1.0.0/16', 'ff05::/16', 'ff00::/8', 'ff00::/8', 'ff00::/8'])
    expect(o.dropped.reject).toEqual(REJECTS)
    expect(o.dropped['link-to-us']).toEqual(['203.0.113.0/24', '2001:db8:1::/64'])
    expect(o.excludes).toEqual(['203.0.113.0/24 link-to-us'])
  })

  it('RHEL 9-like, NetworkManager routes (captured)', () => {
    expect(outcome('linux-rhel9-like.txt', ['192.168.122.0/24', '2001:db8:122::/64'], ['192.168.122.50'])).toEqual({
      sources: { 4: 'ip4', 6: 'ip6' },
      chosen: ['10.10.0.0/22', '10.11.0.0/16', '10.12.0.0/16', '2001:db8:123::/64'],
      dropped: {
        default: ['0.0.0.0/0', '::/0'],
        'link-down': ['172.17.0.0/16', '192.168.124.0/24'],
        'link-to-us': ['192.168.122.0/24'],
        'local-network': ['2001:db8:122::/64'],
        'link-local': ['fe80::/64', 'fe80::/64'],
      },
      excludes: [],
    })
  })

  it('FreeBSD 14 (transcribed), reached through a jump host: SSH_CONNECTION names the link', () => {
    expect(outcome('freebsd14.txt', [], [])).toEqual({
      sources: { 4: 'netstat', 6: 'netstat' },
      chosen: ['10.20.0.0/16', '10.30.0.0/16', '10.40.0.0/16', '172.16.5.0/24', '192.168.77.0/24', '2001:db8:1::/64', 'fd00:20::/64', 'fd00:30::/48'],
      dropped: {
        default: ['0.0.0.0/0', '::/0'],
        'bastion-address': [
          '10.20.0.1/32', '127.0.0.1/32', '203.0.113.10/32', '::1/128', '2001:db8:1::10/128', 'fd00:20::1/128',
          'fe80::5a9c:fcff:fe01:2/128', 'fe80::5a9c:fcff:fe01:3/128', 'fe80::1/128',
        ],
        reject: ['10.98.0.0/16', '10.99.0.0/16', '::/96', '::ffff:0:0/96', 'fe80::/10', 'ff02::/16'],
        'link-to-us': ['203.0.113.0/24'],
        'link-local': ['fe80::/64', 'fe80::/64', 'fe80::/64'],
      },
      excludes: [],
    })
  })

  it('macOS (transcribed): classful short networks, ARP entries, a VPN', () => {
    expect(outcome('macos.txt', ['10.44.0.0/16'], ['192.168.64.5'])).toEqual({
      sources: { 4: 'netstat', 6: 'netstat' },
      chosen: ['172.20.8.0/22', '2001:db8:64::/64', 'fd00:44::/64'],
      dropped: {
        default: ['0.0.0.0/0', '::/0'],
        'local-network': ['10.44.0.0/16', '10.44.0.1/32'],
        loopback: ['127.0.0.0/8'],
        'bastion-address': [
          '127.0.0.1/32', '192.168.64.5/32', '192.168.64.5/32', '::1/128', '2001:db8:64::5/128', 'fe80::1/128', 'fe80::3c22:fbff:fe01:203/128',
        ],
        'link-local': ['169.254.0.0/16', 'fe80::/64', 'fe80::/64'],
        // The gateway's /32 cloning route is on the link too.
        'link-to-us': ['192.168.64.0/24', '192.168.64.1/32'],
        neighbor: ['192.168.64.1/32', '192.168.64.7/32'],
        'not-unicast': ['192.168.64.255/32', '224.0.0.0/4', '224.0.0.251/32', 'ff01::/32', 'ff02::/32'],
        reserved: ['255.255.255.255/32'],
      },
      excludes: [],
    })
  })

  it('CentOS 7 (transcribed): IPv4 only, a linkdown docker0', () => {
    expect(outcome('centos7.txt', ['192.168.56.0/24'], ['192.168.56.101'])).toEqual({
      sources: { 4: 'ip4', 6: undefined },
      chosen: ['10.0.2.0/24'],
      dropped: {
        default: ['0.0.0.0/0'],
        'link-local': ['169.254.0.0/16'],
        'link-down': ['172.17.0.0/16'],
        'link-to-us': ['192.168.56.0/24'],
      },
      excludes: [],
    })
  })
})

describe('the bastion command', () => {
  it('is one line of plain words and `;`: nothing a shell could expand, redirect or chain differently', () => {
    expect(BASTION_ROUTES_COMMAND).toMatch(/^[A-Za-z0-9 @:;/._=-]+$/)
    const parts = BASTION_ROUTES_COMMAND.split('; ')
    const markers = parts.filter((p) => p.startsWith('echo ')).map((p) => p.slice('echo '.length))
    expect(markers).toEqual(['conn', 'ip4', 'ip6', 'netstat', 'route', 'route6', 'end'].map((s) => ROUTES_MARKER + s))
    const tools = parts.filter((p) => !p.startsWith('echo ')).map((p) => p.replace(/^env LC_ALL=C PATH=\S+ /, ''))
    expect(tools).toEqual([
      'printenv SSH_CONNECTION',
      'ip -4 route show table main',
      'ip -6 route show table main',
      'netstat -rn',
      'route -n',
      'route -n -A inet6',
    ])
  })
})

describe('parseBastionRoutes on what a broken or hostile account prints', () => {
  const expectRemoteExec = (text: string) => {
    let err: unknown
    try {
      parseBastionRoutes(text)
    } catch (e) {
      err = e
    }
    expect(isTunnelError(err, 'REMOTE_EXEC')).toBe(true)
    expect((err as { hint?: string }).hint).toMatch(/ForceCommand/)
  }

  it('a forced command, a non-POSIX shell or no tools at all: REMOTE_EXEC with the alternative', () => {
    expectRemoteExec('This account is restricted to SFTP.\n')
    expectRemoteExec('')
    // cmd.exe echoes the whole line: no marker stands alone.
    expectRemoteExec(`${BASTION_ROUTES_COMMAND}\r\n`)
    // Every tool missing: markers only.
    expectRemoteExec(['conn', 'ip4', 'ip6', 'netstat', 'route', 'route6', 'end'].map((s) => ROUTES_MARKER + s).join('\n'))
    // Routes outside any section (before the first marker) are not trusted as a format.
    expectRemoteExec('10.1.0.0/16 dev eth0 scope link\n')
  })

  it('ignores a banner, a marker glued to it, lines after "end" and repeated sections', () => {
    const text = [
      'Welcome! 10.9.0.0/16 dev eth0',
      `last login from 192.0.2.1${ROUTES_MARKER}ip4`,
      '10.1.0.0/16 dev eth0 proto kernel scope link src 10.1.0.5',
      `${ROUTES_MARKER}end`,
      '10.2.0.0/16 dev eth0',
      `${ROUTES_MARKER}ip4`,
      '10.3.0.0/16 dev eth0',
    ].join('\n')
    const r = parseBastionRoutes(text)
    expect(r.routes.map((x) => formatCidr(x.net))).toEqual(['10.1.0.0/16'])
    expect(r.ownAddresses).toEqual(['10.1.0.5'])
    expect(r.sshConnection).toBeUndefined()
  })

  it('reads at most MAX_ROUTES_OUTPUT characters and says the list may be incomplete', () => {
    const line = '10.1.0.0/16 via 10.0.0.1 dev eth0\n'
    const r = parseBastionRoutes(`${ROUTES_MARKER}ip4\n${line.repeat(Math.ceil(MAX_ROUTES_OUTPUT / line.length) + 10)}`)
    expect(r.truncated).toBe(true)
    expect(r.routes.length).toBeLessThanOrEqual(4096)
    expect(parseBastionRoutes(`${ROUTES_MARKER}ip4\n${line}`).truncated).toBe(false)
  })
})
