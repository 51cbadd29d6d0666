import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import { cgroup2Root, removeCgroup } from '../../../src/platform/os/cgroup'
import { spawn } from 'node:child_process'

let dir: string
let journal: Journal
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-helper-'))
  journal = new Journal(dir)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const applyLine = (id = 1, method = 'nft'): string =>
  JSON.stringify({ id, op: 'apply', method, spec: { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [] } })

function server(x: FakeExecutor): HelperServer {
  return new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1 })
}

describe('HelperServer', () => {
  it('apply writes the journal BEFORE running anything, revert removes it; revert is idempotent', async () => {
    let journalAtFirstRun: string[] | undefined
    const x = new FakeExecutor().on(() => true, () => {
      journalAtFirstRun ??= fs.readdirSync(dir)
      return undefined
    })
    const s = server(x)
    const r = await s.handleLine(applyLine())
    expect(r).toEqual({ id: 1, ok: true, result: { method: 'nft', object: 'subnet-tunnel-ab12', families: [4], steps: 1 } })
    expect(journalAtFirstRun).toEqual(['ab12.json'])
    const e = journal.list()[0]
    expect('entry' in e && e.entry).toMatchObject({ id: 'ab12', method: 'nft', netns: 77, revert: [['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']] })
    expect(await s.handleLine('{"id":2,"op":"revert"}')).toEqual({ id: 2, ok: true, result: { reverted: true } })
    expect(await s.handleLine('{"id":3,"op":"revert"}')).toEqual({ id: 3, ok: true, result: { reverted: false } })
    expect(journal.list()).toEqual([])
    expect(x.calls.filter((c) => c[0] !== 'conntrack').map((c) => c.slice(0, 3).join(' '))).toEqual(['nft create table', 'nft delete table'])
  })

  it('a failed apply is reverted, reported as FW_APPLY with a method prefix, and leaves no journal', async () => {
    const x = new FakeExecutor().failAt(3, 'iptables: No chain/target/match by that name.')
    const s = server(x)
    const r = await s.handleLine(applyLine(5, 'nat'))
    expect(r).toMatchObject({ id: 5, ok: false, error: { code: 'FW_APPLY', message: 'nat: iptables: -A: iptables: No chain/target/match by that name.' } })
    expect(x.calls.slice(4).map((c) => c[4])).toEqual(['-D', '-F', '-X'])
    expect(journal.list()).toEqual([])
    expect(s.isApplied).toBe(false)
  })

  it('an IPv6 nameserver brings the IPv6 family into the journal, so a stale revert covers its ip6tables chain', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    const line = JSON.stringify({ id: 1, op: 'apply', method: 'nat', spec: {
      instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [],
      dns: { servers: ['10.0.0.2', 'fd98::53'], port: 5300, exemptSourcePorts: [40001] },
    } })
    expect(await s.handleLine(line)).toMatchObject({ ok: true, result: { families: [4, 6] } })
    const e = journal.list()[0]
    expect('entry' in e && e.entry.families).toEqual([4, 6])
    expect('entry' in e && e.entry.revert.map((a) => `${a[0]} ${a[4]}`)).toEqual([
      'iptables -D', 'iptables -F', 'iptables -X', 'ip6tables -D', 'ip6tables -F', 'ip6tables -X',
    ])
    expect(x.calls.some((c) => c[0] === 'ip6tables' && c.includes('fd98::53'))).toBe(true)
  })

  it('gateway mode is recorded in the journal (nat needs it to delete the PREROUTING jump); absent otherwise', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    const line = (id: number, gateway?: boolean): string => JSON.stringify({ id, op: 'apply', method: 'nat', spec: {
      instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], ...(gateway !== undefined && { gateway }),
    } })
    expect(await s.handleLine(line(1, true))).toMatchObject({ ok: true })
    const e = journal.list()[0]
    expect('entry' in e && e.entry.gateway).toBe(true)
    expect(x.calls).toContainEqual(['iptables', '-w', '-t', 'nat', '-I', 'PREROUTING', '1', '-j', 'subnet-tunnel-ab12'])
    await s.handleLine('{"id":2,"op":"revert"}')
    expect(x.calls).toContainEqual(['iptables', '-w', '-t', 'nat', '-D', 'PREROUTING', '-j', 'subnet-tunnel-ab12'])
    expect(await s.handleLine(line(3))).toMatchObject({ ok: true })
    const e2 = journal.list()[0]
    expect('entry' in e2 && 'gateway' in e2.entry).toBe(false)
  })

  it('the scope (gateway interfaces and sources, owner, DNS guard) is recorded, and a stale revert deletes exactly those jumps', async () => {
    const x = new FakeExecutor()
    const s = new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, isAlive: () => false })
    const line = JSON.stringify({ id: 1, op: 'apply', method: 'nat', spec: {
      instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], gateway: true,
      gatewayInterfaces: ['br0'], gatewaySources: ['172.17.0.0/16'], ownerUid: 1000,
      dns: { servers: ['10.0.0.2'], port: 5300, gatewayPort: 5301, exemptSourcePorts: [] },
    } })
    expect(await s.handleLine(line)).toMatchObject({ ok: true })
    const e = journal.list()[0]
    expect('entry' in e && e.entry).toMatchObject({
      gateway: true, gatewayInterfaces: ['br0'], gatewaySources: ['172.17.0.0/16'], ownerUid: 1000, dnsGuard: true,
    })
    // As if the helper had died: cleanup recomputes the revert from the entry alone.
    const y = new FakeExecutor()
    expect(await new HelperServer({ exec: y, journal, netns: 77, isAlive: () => false }).cleanup()).toMatchObject({ removed: ['instance ab12 (nat)'] })
    const applied = x.calls.filter((c) => c.includes('-I'))
    expect(applied).toEqual([
      ['iptables', '-w', '-t', 'filter', '-I', 'INPUT', '1', '-j', 'subnet-tunnel-ab12'],
      ['iptables', '-w', '-t', 'nat', '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '1000', '-j', 'subnet-tunnel-ab12'],
      ['iptables', '-w', '-t', 'nat', '-I', 'PREROUTING', '1', '-i', 'br0', '-s', '172.17.0.0/16', '-j', 'subnet-tunnel-ab12'],
    ])
    for (const a of applied) expect(y.calls).toContainEqual(a.filter((t, i) => !(t === '1' && a[i - 2] === '-I')).map((t) => (t === '-I' ? '-D' : t)))
    expect(y.calls.filter((c) => c.includes('-X')).map((c) => c[3])).toEqual(['nat', 'filter'])
  })

  it('under sudo, --owner-only may only name the caller or root (like the tun device owner)', async () => {
    const line = (id: number, ownerUid: number): string => JSON.stringify({ id, op: 'apply', method: 'nft', spec: {
      instanceId: `ow${id}`, listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], ownerUid,
    } })
    const sudo = (): HelperServer => new HelperServer({ exec: new FakeExecutor(), journal, netns: 77, pid: process.pid, mainPid: 1, callerUid: 1000 })
    expect(await sudo().handleLine(line(1, 1001))).toMatchObject({
      ok: false, error: { code: 'HELPER', message: '--owner-only: capture may only be limited to uid 1000 (the sudo caller), not 1001' },
    })
    expect(journal.list()).toEqual([])
    expect(await sudo().handleLine(line(2, 1000))).toMatchObject({ ok: true })
    expect(await sudo().handleLine(line(3, 0))).toMatchObject({ ok: true })
    // not under sudo (root started us): any uid
    expect(await server(new FakeExecutor()).handleLine(line(4, 1001))).toMatchObject({ ok: true })
  })

  it('with DNS capture, forgets UDP DNS conntrack entries after apply and after revert (best effort)', async () => {
    // conntrack exits 1 with "0 flow entries" when there is nothing to delete: not an error.
    const x = new FakeExecutor().on((a) => a[0] === 'conntrack', { code: 1, stderr: 'conntrack v1.4.7: 0 flow entries have been deleted.' })
    const s = server(x)
    const spec = {
      instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [],
      dns: { servers: ['127.0.0.1', 'fd00::53'], port: 4053, exemptSourcePorts: [] },
    }
    const r = await s.handleLine(JSON.stringify({ id: 1, op: 'apply', method: 'nft', spec }))
    expect(r).toMatchObject({ ok: true })
    await s.handleLine('{"id":2,"op":"revert"}')
    const ct = (argv: readonly string[]) => argv[0] === 'conntrack'
    const flush = [
      ['conntrack', '-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', '127.0.0.1', '--orig-port-dst', '53'],
      ['conntrack', '-D', '-f', 'ipv6', '-p', 'udp', '--orig-dst', 'fd00::53', '--orig-port-dst', '53'],
    ]
    // Redirected TCP flows to the captured networks: a dead proxy's before apply, ours after revert.
    const tcp = ['conntrack', '-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '10.0.0.0', '--mask-dst', '255.0.0.0', '--reply-src', '127.0.0.1']
    expect(x.calls.map((c) => (ct(c) ? c : `${c[0]} ${c[1]}`))).toEqual([tcp, 'nft create', ...flush, 'nft delete', ...flush, [...tcp, '--reply-port-src', '4000']])
  })

  it('forgets the redirected TCP flows a dead proxy left to the captured networks before applying, and its own after revert (nat too)', async () => {
    // A client reusing a source port of such a flow was sent to the dead listener (stale-flows.ts).
    const x = new FakeExecutor()
    const s = server(x)
    const spec = { instanceId: 'ab12', listenPort: 4100, include: ['10.1.0.0/16', 'fd00:1::/64'], exclude: [] }
    expect(await s.handleLine(JSON.stringify({ id: 1, op: 'apply', method: 'nat', spec }))).toMatchObject({ ok: true })
    const before = [
      ['conntrack', '-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '10.1.0.0', '--mask-dst', '255.255.0.0', '--reply-src', '127.0.0.1'],
      ['conntrack', '-D', '-f', 'ipv6', '-p', 'tcp', '--orig-dst', 'fd00:1::', '--mask-dst', 'ffff:ffff:ffff:ffff::', '--reply-src', '::1'],
    ]
    expect(x.calls.slice(0, 2)).toEqual(before)
    expect(x.calls.slice(2).some((c) => c[0] === 'conntrack')).toBe(false)
    const applied = x.calls.length
    await s.handleLine('{"id":2,"op":"revert"}')
    expect(x.calls.slice(applied).filter((c) => c[0] === 'conntrack')).toEqual(before.map((a) => [...a, '--reply-port-src', '4100']))
  })

  it('without conntrack installed, apply still succeeds', async () => {
    const x = new FakeExecutor().on((a) => a[0] === 'conntrack', { code: 127, stderr: 'not found' })
    const spec = { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], dns: { servers: ['10.0.0.2'], port: 4053, exemptSourcePorts: [] } }
    expect(await server(x).handleLine(JSON.stringify({ id: 1, op: 'apply', method: 'nft', spec }))).toMatchObject({ ok: true })
  })

  it('refuses a second apply while applied; shutdown reverts once', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    await s.handleLine(applyLine())
    expect(await s.handleLine(applyLine(2))).toMatchObject({ ok: false, error: { code: 'HELPER', message: expect.stringMatching(/already applied/) } })
    await s.shutdown()
    await s.shutdown()
    expect(x.calls.filter((c) => c[1] === 'delete')).toHaveLength(1)
  })

  it('never runs argv from a request: bad requests are answered without executing anything', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    expect(await s.handleLine('{"id":9,"op":"apply","method":"nft","argv":["sh","-c","id"]}')).toMatchObject({ id: 9, ok: false, error: { code: 'HELPER' } })
    expect(await s.handleLine('garbage')).toMatchObject({ id: null, ok: false })
    expect(x.calls).toEqual([])
  })

  it('requests run one at a time: a revert sent during an apply waits for it', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const x = new FakeExecutor()
    const slow = { run: async (a: readonly string[]) => (a[1] === 'create' ? await gate : undefined, x.run(a)) }
    const s = new HelperServer({ exec: slow, journal, netns: 77 })
    const ap = s.handleLine(applyLine())
    const rv = s.handleLine('{"id":2,"op":"revert"}')
    release()
    expect((await ap).ok).toBe(true)
    expect(await rv).toMatchObject({ ok: true, result: { reverted: true } })
    expect(x.calls.filter((c) => c[0] !== 'conntrack').map((c) => c[1])).toEqual(['create', 'delete'])
  })
})

describe('HelperServer --fail-closed guard', () => {
  const guardLine = (id: number, spec: Record<string, unknown> = {}): string =>
    JSON.stringify({ id, op: 'guard', spec: { instanceId: 'ab12', include: ['10.0.0.0/8'], exclude: ['10.0.0.5/32'], ...spec } })
  const state = (id: number, closed: boolean): string => JSON.stringify({ id, op: 'guard-state', closed })
  const rules = (x: FakeExecutor) => x.calls.filter((c) => c[2] === 'rule').map((c) => c[3])

  it('built open for the applied instance only, journalled in a file of its own; closed and opened on request', async () => {
    const x = new FakeExecutor()
    const s = new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, platform: 'linux' })
    expect(await s.handleLine(guardLine(1))).toMatchObject({ ok: false, error: { message: /only for the instance whose rules are applied/ } })
    expect(await s.handleLine(applyLine(2))).toMatchObject({ ok: true })
    expect(await s.handleLine(guardLine(3, { instanceId: 'other' }))).toMatchObject({ ok: false })
    expect(await s.handleLine(guardLine(4))).toMatchObject({ ok: true, result: { families: [4] } })
    expect(fs.readdirSync(dir).sort()).toEqual(['ab12.guard.json', 'ab12.json'])
    expect(rules(x)).toEqual([])
    expect(await s.handleLine(state(5, true))).toMatchObject({ ok: true, result: { closed: true } })
    expect(await s.handleLine(state(6, true))).toMatchObject({ ok: true })
    expect(await s.handleLine(state(7, false))).toMatchObject({ ok: true, result: { closed: false } })
    expect(rules(x)).toEqual(['add', 'del'])
  })

  it('the capture never goes before the guard is closed: revert and shutdown close it first and leave it (and its entry) in place', async () => {
    const x = new FakeExecutor()
    const s = new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, platform: 'linux' })
    await s.handleLine(applyLine(1))
    await s.handleLine(guardLine(2))
    const before = x.calls.length
    expect(await s.shutdown()).toBe(true)
    const after = x.calls.slice(before)
    expect(after[0]).toEqual(['ip', '-4', 'rule', 'add', 'priority', '5353', 'lookup', expect.any(String)])
    expect(after.slice(1).some((c) => c[0] === 'nft' && c[1] === 'delete')).toBe(true)
    expect(after.some((c) => c[2] === 'rule' && c[3] === 'del')).toBe(false)
    expect(fs.readdirSync(dir)).toEqual(['ab12.guard.json'])
  })

  it('only an explicit cleanup removes the guard of a dead instance: the start-up sweep leaves it', async () => {
    const x = new FakeExecutor()
    const s = new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, platform: 'linux' })
    await s.handleLine(applyLine(1))
    await s.handleLine(guardLine(2))
    await s.shutdown()
    const y = new FakeExecutor()
    const next = new HelperServer({ exec: y, journal, netns: 77, isAlive: () => false, platform: 'linux' })
    expect((await next.cleanup()).removed).toEqual([])
    expect(fs.readdirSync(dir)).toEqual(['ab12.guard.json'])
    expect(y.calls.some((c) => c[2] === 'rule' && c[3] === 'del')).toBe(false)
    const r = await next.handleLine(JSON.stringify({ id: 9, op: 'cleanup' }))
    expect(r).toMatchObject({ ok: true, result: { removed: expect.arrayContaining(['fail-closed guard of instance ab12']) } })
    expect(fs.readdirSync(dir)).toEqual([])
    expect(y.calls).toContainEqual(['ip', '-4', 'rule', 'del', 'priority', '5353', 'lookup', expect.any(String)])
  })

  it('under sudo the guard may only be limited to the caller\'s uid; refused off Linux', async () => {
    const s = new HelperServer({ exec: new FakeExecutor(), journal, netns: 77, pid: process.pid, mainPid: 1, platform: 'linux', callerUid: 1000 })
    await s.handleLine(applyLine(1))
    expect(await s.handleLine(guardLine(2, { ownerUid: 1001 }))).toMatchObject({ ok: false, error: { message: /uid 1000/ } })
    const mac = new HelperServer({ exec: new FakeExecutor(), journal: new Journal(path.join(dir, 'm')), netns: 77, pid: process.pid, mainPid: 1, platform: 'darwin' })
    await mac.handleLine(applyLine(1))
    expect(await mac.handleLine(guardLine(2))).toMatchObject({ ok: false, error: { code: 'FW_UNSUPPORTED' } })
  })
})

describe('HelperServer exec --only', () => {
  const root = cgroup2Root()
  const canCgroup = process.getuid?.() === 0 && root !== undefined
  const onlyLine = (id: number, method = 'nat'): string =>
    JSON.stringify({ id, op: 'apply', method, spec: { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], cgroup: 'subnet-tunnel-ab12' } })
  const add = (id: number, pid: number): string => JSON.stringify({ id, op: 'cgroup-add', pid })

  it.skipIf(!canCgroup)('creates a root-owned cgroup before the rules, moves only the caller\'s process started by the tunnel, kills what is left and removes it after the rules', async () => {
    const x = new FakeExecutor()
    let dirAtRules: boolean | undefined
    x.on((a) => a[0] === 'iptables' && a.includes('-N'), () => {
      dirAtRules ??= fs.existsSync(path.join(root!, 'subnet-tunnel-ab12'))
      return undefined
    })
    const child = spawn('sleep', ['30'])
    const ids: Record<number, { uid: number; ppid: number }> = { [child.pid!]: { uid: 1000, ppid: 4242 }, 7: { uid: 1001, ppid: 4242 }, 8: { uid: 1000, ppid: 999 } }
    const s = new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, callerUid: 1000, processIds: (p) => ids[p], ancestors: () => [4242, 1] })
    try {
      expect(await s.handleLine(onlyLine(1))).toMatchObject({ ok: true })
      expect(dirAtRules).toBe(true)
      const dir = path.join(root!, 'subnet-tunnel-ab12')
      expect(fs.statSync(dir).uid).toBe(0)
      expect(fs.statSync(path.join(dir, 'cgroup.procs')).mode & 0o022).toBe(0)
      expect(journal.list()[0]).toMatchObject({ entry: { cgroup: 'subnet-tunnel-ab12' } })
      expect(await s.handleLine(add(2, 7))).toMatchObject({ ok: false, error: { message: /not the caller's/ } })
      expect(await s.handleLine(add(3, 8))).toMatchObject({ ok: false, error: { message: /not started by the tunnel/ } })
      expect(await s.handleLine(add(4, 9))).toMatchObject({ ok: false, error: { message: /no process 9/ } })
      expect(await s.handleLine(add(5, child.pid!))).toMatchObject({ ok: true })
      expect(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim()).toBe(String(child.pid))
      const exited = new Promise((r) => child.once('exit', (_c, sig) => r(sig)))
      expect(await s.shutdown()).toBe(true)
      expect(await exited).toBe('SIGKILL')
      expect(fs.existsSync(dir)).toBe(false)
    } finally {
      child.kill('SIGKILL')
      await removeCgroup(root!, 'subnet-tunnel-ab12').catch(() => {})
    }
  })

  it('refused before anything runs: a cgroup for pf or for tun without its match, one not named after the instance, cgroup-add without an exec --only capture', async () => {
    const s = server(new FakeExecutor())
    const bad = (spec: Record<string, unknown>, method: string) =>
      s.handleLine(JSON.stringify({ id: 1, op: 'apply', method, spec: { instanceId: 'ab12', listenPort: method === 'tun' ? 0 : 4000, include: ['10.0.0.0/8'], exclude: [], ...spec } }))
    expect(await bad({ cgroup: 'subnet-tunnel-ab12', tunOwner: 0 }, 'tun')).toMatchObject({ ok: false, error: { message: expect.stringMatching(/cgroupMatch must be nft or iptables/) } })
    expect(await bad({ cgroup: 'subnet-tunnel-ab12' }, 'pf')).toMatchObject({ ok: false, error: { message: expect.stringMatching(/nat, nft and tun only/) } })
    expect(await bad({ cgroup: 'subnet-tunnel-other' }, 'nat')).toMatchObject({ ok: false, error: { message: /subnet-tunnel-<instanceId>/ } })
    expect(await bad({ cgroup: '../../x' }, 'nft')).toMatchObject({ ok: false })
    expect(await s.handleLine(applyLine(2))).toMatchObject({ ok: true })
    expect(await s.handleLine(add(3, process.pid))).toMatchObject({ ok: false, error: { message: /no exec --only capture/ } })
  })
})
