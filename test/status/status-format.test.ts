import { describe, expect, it } from 'vitest'
import { formatStatus, humanBytes, humanDuration, processLabel } from '../../src/status/status-format'
import type { StatusSnapshot } from '../../src/status/status-types'
import { trafficSnapshot } from '../../src/status/status-types'
import { ConnTracker } from '../../src/router/conn-tracker'

const full: StatusSnapshot = {
  pid: 4242,
  version: '0.1.0',
  instanceId: 'k3x9',
  startedAt: '2024-05-01T10:00:00.000Z',
  uptimeS: 3 * 3600 + 7 * 60 + 5,
  remotes: [
    { name: 'bastion-a', hostPort: '203.0.113.5:22', state: 'up', reconnects: 1, channelsOpen: 2_040, sshConnections: 3 },
    { name: 'bastion-b', hostPort: '[2001:db8::5]:2222', state: 'connecting', reconnects: 3, channelsOpen: 1 },
  ],
  subnets: ['10.0.0.0/16=bastion-a', '10.1.0.0/16=bastion-b'],
  excludes: ['10.0.5.0/24'],
  method: 'nft',
  listener: '127.0.0.1:12300',
  proxies: [
    { kind: 'socks5', address: '127.0.0.1:1080' },
    { kind: 'http', address: '127.0.0.1:8080' },
  ],
  forwards: [
    { kind: 'local', spec: '5432:db:5432', address: '127.0.0.1:5432', target: 'db:5432' },
    { kind: 'remote', spec: '9000:localhost:3000', address: '127.0.0.1:9000', target: 'localhost:3000' },
  ],
  dns: { servers: ['127.0.0.53'], remote: ['10.0.0.2'], queries: 120, cacheHits: 96, tunnel: 20, local: 4, failed: 0 },
  totals: { active: 2, total: 57, failed: 3, bytesUp: 1_234_567, bytesDown: 34_000_000 },
  connections: [
    { id: 57, frontEnd: 'socks5', src: '127.0.0.1:50001', dst: 'git.corp:22', bytesUp: 900, bytesDown: 12_000, ageS: 4 },
    {
      id: 12,
      frontEnd: 'transparent',
      src: '127.0.0.1:41234',
      dst: '10.0.1.20:3306',
      bytesUp: 1_000_000,
      bytesDown: 33_000_000,
      ageS: 754,
      process: { pid: 31337, command: '/usr/bin/mysql -h db.corp.internal', uid: 1000 },
    },
  ],
}

describe('formatStatus', () => {
  it('says so when nothing runs', () => {
    expect(formatStatus([])).toBe('no running instances\n')
  })

  it('renders a full instance block and the connections oldest first', () => {
    expect(formatStatus([full])).toBe(
      [
        'instance k3x9 · pid 4242 · v0.1.0 · up 3h07m (since 2024-05-01T10:00:00.000Z)',
        '  remote     bastion-a (203.0.113.5:22) up · 1 reconnect · 2040 channels open over 3 SSH connections',
        '  remote     bastion-b ([2001:db8::5]:2222) connecting · 3 reconnects · 1 channel open',
        '  subnets    10.0.0.0/16=bastion-a, 10.1.0.0/16=bastion-b',
        '  excludes   10.0.5.0/24',
        '  capture    nft · listener 127.0.0.1:12300 · every local user',
        '  proxies    socks5 127.0.0.1:1080, http 127.0.0.1:8080',
        '  forward    -L 127.0.0.1:5432 → db:5432',
        '  forward    -R bastion 127.0.0.1:9000 → localhost:3000',
        '  dns        120 queries · 80% cache · 20 tunnel · 4 local · 0 failed (127.0.0.53 → 10.0.0.2)',
        '  traffic    2 active · 57 total · 3 failed · 1.2 MB ↑ · 34 MB ↓',
        '  stop       subnet-tunnel stop k3x9',
        '',
        '  ID   FRONT-END    PROCESS        SOURCE → DESTINATION                  UP   DOWN     AGE',
        '  #12  transparent  mysql (31337)  127.0.0.1:41234 → 10.0.1.20:3306  1.0 MB  33 MB  12m34s',
        '  #57  socks5       -              127.0.0.1:50001 → git.corp:22      900 B  12 kB      4s',
        '',
      ].join('\n'),
    )
  })

  it('shows a forward of an older snapshot (no target) by its spec, once', () => {
    const out = formatStatus([{ ...full, forwards: [{ kind: 'local', spec: '5432:db:5432', address: '127.0.0.1:5432' }] }])
    expect(out).toContain('  forward    -L 127.0.0.1:5432 (5432:db:5432)\n')
  })

  it('names the profile, the log and the last problem, and how to stop it', () => {
    const now = Date.parse('2024-05-01T13:10:00.000Z')
    const out = formatStatus(
      [{ ...full, profile: 'work', logFile: '/home/u/.local/state/subnet-tunnel/work.log', lastError: { at: '2024-05-01T13:05:00.000Z', message: '[ssh] b: connection lost' } }],
      { now },
    )
    expect(out).toContain('instance k3x9 · profile work · pid 4242')
    expect(out).toContain('  log        /home/u/.local/state/subnet-tunnel/work.log · last problem 5m00s ago: [ssh] b: connection lost\n')
    expect(out).toContain('  stop       subnet-tunnel stop work\n')
  })

  it('labels instances of another network namespace and counts the ones left out', () => {
    const out = formatStatus([{ ...full, netns: 4026532000 }, { ...full, instanceId: 'here', netns: 4026531840 }], { netns: 4026531840, otherNetns: 0 })
    expect(out).toContain('instance k3x9 · pid 4242 · v0.1.0 · up 3h07m (since 2024-05-01T10:00:00.000Z) · netns 4026532000 (another network namespace)\n')
    expect(out).toMatch(/instance here · pid 4242 · v0\.1\.0 · up 3h07m \(since [^)]+\)\n/)
    expect(formatStatus([], { netns: 1, otherNetns: 2 })).toBe('no running instances in this network namespace; 2 instances in other network namespaces: subnet-tunnel status --all\n')
    expect(formatStatus([full], { netns: 1, otherNetns: 1 })).toMatch(/\n\n1 instance in other network namespaces: subnet-tunnel status --all\n$/)
  })

  it('says whose connections are captured and what a gateway serves', () => {
    const out = formatStatus([{ ...full, ownerUid: 1000, gateway: 'br0 from 172.17.0.0/16' }])
    expect(out).toContain('  capture    nft · listener 127.0.0.1:12300 · uid 1000 only\n  gateway    br0 from 172.17.0.0/16\n')
    // exec --only: not "every local user"
    expect(formatStatus([{ ...full, execOnly: true }])).toContain('  capture    nft · listener 127.0.0.1:12300 · the exec --only command only\n')
    expect(formatStatus([{ ...full, execOnly: true, ownerUid: 1000 }])).toContain(' · the exec --only command only (uid 1000)\n')
  })

  it('renders a minimal proxies-only instance without empty sections', () => {
    const min: StatusSnapshot = {
      ...full,
      instanceId: 'p1',
      remotes: [{ name: 'b', hostPort: 'b:22', state: 'up', reconnects: 0, channelsOpen: 0 }],
      subnets: [],
      excludes: [],
      method: undefined,
      listener: undefined,
      forwards: [],
      dns: undefined,
      proxies: [{ kind: 'socks5', address: '127.0.0.1:1080' }],
      totals: { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 },
      connections: [],
    }
    const out = formatStatus([min, full])
    const first = out.split('\n\n')[0]
    expect(first).not.toMatch(/subnets|capture|dns|forward|ID +FRONT-END/)
    expect(first).toContain('traffic    0 active · 0 total · 0 failed · 0 B ↑ · 0 B ↓')
    expect(out).toContain('instance k3x9')
  })
})

describe('human units', () => {
  it('formats bytes', () => {
    expect([0, 999, 1000, 1234, 99_999, 1_234_567, 34e6, 5.5e12].map(humanBytes)).toEqual([
      '0 B', '999 B', '1.0 kB', '1.2 kB', '100 kB', '1.2 MB', '34 MB', '5.5 TB',
    ])
  })
  it('formats durations', () => {
    expect([0, 59, 60, 192, 3600, 3 * 86400 + 4 * 3600 + 5].map(humanDuration)).toEqual(['0s', '59s', '1m00s', '3m12s', '1h00m', '3d04h'])
  })
  it('labels processes', () => {
    expect(processLabel(undefined)).toBe('-')
    expect(processLabel({ pid: null, command: null, uid: 1000 })).toBe('uid 1000')
    expect(processLabel({ pid: 2, command: '[kthreadd]', uid: 0 })).toBe('[kthreadd] (2)')
    expect(processLabel({ pid: 7, command: '/opt/' + 'x'.repeat(50) + ' --flag', uid: 0 }, 20)).toBe('xxxxxxxxxxxxxxx… (7)')
  })
})

describe('trafficSnapshot', () => {
  it('adds live bytes of open connections to the totals and lists them oldest first', () => {
    const t = new ConnTracker()
    const a = t.open({ id: t.nextId(), frontEnd: 'http', srcAddress: '::1', srcPort: 9 }, { host: 'example.corp', port: 443 })
    const b = t.open({ id: t.nextId(), frontEnd: 'transparent', srcAddress: '127.0.0.1', srcPort: 8 }, { host: 'fd00::1', port: 22 })
    const done = t.open({ id: t.nextId(), frontEnd: 'http', srcAddress: '::1', srcPort: 10 }, { host: 'x', port: 80 })
    done.bytesUp = 1
    done.bytesDown = 2
    t.close(done)
    ;(a as { startedAt: number }).startedAt -= 1000
    ;(b as { startedAt: number }).startedAt -= 5000
    a.bytesUp = 10
    b.bytesDown = 20
    const now = Date.now()
    const { totals, connections } = trafficSnapshot(t, (id) => (id === 2 ? { pid: 5, command: 'ssh', uid: 0 } : undefined), now)
    expect(totals).toEqual({ active: 2, total: 3, failed: 0, bytesUp: 11, bytesDown: 22 })
    expect(t.totals.bytesUp).toBe(1) // the tracker itself is untouched
    expect(connections.map((c) => [c.id, c.src, c.dst, c.ageS])).toEqual([
      [2, '127.0.0.1:8', '[fd00::1]:22', 5],
      [1, '[::1]:9', 'example.corp:443', 1],
    ])
    expect(connections[0].process).toEqual({ pid: 5, command: 'ssh', uid: 0 })
    expect(connections[1]).not.toHaveProperty('process')
  })
})
