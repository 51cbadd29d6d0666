import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseIptablesS } from '../../../src/platform/firewall/nat'
import { parseNftTables } from '../../../src/platform/firewall/nft'
import { cleanupStale } from '../../../src/platform/helper/cleanup'
import { FakeExecutor } from '../../fakes/fake-executor'
import { currentNetns, isProcessAlive, Journal, processStartTime, processState, stateDir, type JournalEntry } from '../../../src/platform/helper/journal'
import { TUN_SCAN_ARGV } from '../../../src/platform/firewall/tun-scan'

let dir: string
let journal: Journal
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-journal-'))
  journal = new Journal(path.join(dir, 'state'))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const NETNS = 4026531840
const entry = (id: string, over: Partial<JournalEntry> = {}): JournalEntry => ({
  id,
  helperPid: 999_999,
  helperStart: '1',
  mainPid: 1,
  netns: NETNS,
  method: 'nat',
  families: [4],
  revert: [['rm', '-rf', '/']], // must never be executed: cleanup recomputes the revert
  createdAt: '2024-01-01T00:00:00Z',
  ...over,
})

describe('Journal', () => {
  it('create is exclusive: a second create of the same id fails and leaves the first entry; no temp file is left', () => {
    journal.create(entry('ab12', { helperPid: 1 }))
    expect(() => journal.create(entry('ab12', { helperPid: 2 }))).toThrow(/instance id ab12 is already in use/)
    expect(journal.list()).toEqual([{ file: path.join(journal.dir, 'ab12.json'), entry: entry('ab12', { helperPid: 1 }) }])
    expect(fs.readdirSync(journal.dir)).toEqual(['ab12.json'])
    expect(fs.statSync(journal.fileOf('ab12')).mode & 0o777).toBe(0o600)
  })

  it('writes 0600 files in a 0700 directory and reads them back; remove is idempotent', () => {
    journal.write(entry('ab12'))
    expect(fs.statSync(journal.dir).mode & 0o777).toBe(0o700)
    expect(fs.statSync(path.join(journal.dir, 'ab12.json')).mode & 0o777).toBe(0o600)
    expect(journal.list()).toEqual([{ file: path.join(journal.dir, 'ab12.json'), entry: entry('ab12') }])
    journal.remove('ab12')
    journal.remove('ab12')
    expect(journal.list()).toEqual([])
  })

  it('reports malformed files instead of throwing, ignores foreign names', () => {
    journal.write(entry('ok1'))
    fs.writeFileSync(path.join(journal.dir, 'bad1.json'), '{"id":"bad1"}')
    fs.writeFileSync(path.join(journal.dir, 'zz.json'), 'not json')
    fs.writeFileSync(path.join(journal.dir, 'README'), 'x')
    const l = journal.list()
    expect(l.map((r) => ('entry' in r ? `ok ${r.entry.id}` : `bad ${path.basename(r.file)}`))).toEqual(['bad bad1.json', 'ok ok1', 'bad zz.json'])
  })

  it('state dir: env override or /run/subnet-tunnel', () => {
    expect(stateDir({})).toBe('/run/subnet-tunnel')
    expect(stateDir({ SUBNET_TUNNEL_STATE_DIR: '/tmp/x' })).toBe('/tmp/x')
    // Through sudo the caller must not pick where root writes.
    expect(stateDir({ SUBNET_TUNNEL_STATE_DIR: '/tmp/x', SUDO_UID: '1000' })).toBe('/run/subnet-tunnel')
  })

  it('process liveness uses kill 0 and the start time (pid reuse)', () => {
    const start = processStartTime(process.pid)
    expect(start).toMatch(/^\d+$/)
    expect(isProcessAlive(process.pid, start)).toBe(true)
    expect(isProcessAlive(process.pid, String(Number(start) + 1))).toBe(false)
    expect(isProcessAlive(2 ** 22 + 12345)).toBe(false)
    expect(currentNetns()).toBeGreaterThan(0)
  })

  it('a zombie is dead: a helper that exited but was never reaped leaves orphaned rules', async () => {
    // `sleep 0` exits at once; its parent then execs `sleep 5`, which never reaps it.
    const sh = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] })
    try {
      const pid = Number(await new Promise<string>((r) => sh.stdout!.once('data', (d: Buffer) => r(d.toString()))))
      for (let i = 0; i < 100 && processState(pid) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20))
      expect(processState(pid)).toBe('Z')
      expect(isProcessAlive(pid, processStartTime(pid))).toBe(false)
      expect(isProcessAlive(pid)).toBe(false)
    } finally {
      sh.kill('SIGKILL')
    }
  })
})

describe('cleanupStale', () => {
  it('reverts dead entries of this netns (recomputed argv), keeps live ones and other namespaces', async () => {
    journal.write(entry('dead1', { method: 'nat', families: [4, 6] }))
    journal.write(entry('dead2', { method: 'nft' }))
    journal.write(entry('live1', { helperPid: 42 }))
    journal.write(entry('other1', { netns: 1234 }))
    const x = new FakeExecutor()
    const report = await cleanupStale(x, { journal, netns: NETNS, isAlive: (pid) => pid === 42, scanKernel: false })
    expect(report).toEqual({ removed: ['instance dead1 (nat)', 'instance dead2 (nft)'], kept: 2, warnings: [] })
    expect(x.calls).toEqual([
      ['iptables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-j', 'subnet-tunnel-dead1'],
      ['iptables', '-w', '-t', 'nat', '-F', 'subnet-tunnel-dead1'],
      ['iptables', '-w', '-t', 'nat', '-X', 'subnet-tunnel-dead1'],
      ['ip6tables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-j', 'subnet-tunnel-dead1'],
      ['ip6tables', '-w', '-t', 'nat', '-F', 'subnet-tunnel-dead1'],
      ['ip6tables', '-w', '-t', 'nat', '-X', 'subnet-tunnel-dead1'],
      ['nft', 'delete', 'table', 'inet', 'subnet-tunnel-dead2'],
    ])
    expect(journal.list().map((r) => ('entry' in r ? r.entry.id : '?'))).toEqual(['live1', 'other1'])
  })

  it('a gateway entry (nat) also deletes the PREROUTING jump; entries without the field mean no gateway', async () => {
    journal.write(entry('gw1', { families: [4, 6], gateway: true }))
    journal.write(entry('old1', { families: [4] }))
    const x = new FakeExecutor()
    const report = await cleanupStale(x, { journal, netns: NETNS, isAlive: () => false, scanKernel: false })
    expect(report).toEqual({ removed: ['instance gw1 (nat)', 'instance old1 (nat)'], kept: 0, warnings: [] })
    const N = (bin: string, ...a: string[]): string[] => [bin, '-w', '-t', 'nat', ...a]
    expect(x.calls).toEqual([
      N('iptables', '-D', 'OUTPUT', '-j', 'subnet-tunnel-gw1'),
      N('iptables', '-D', 'PREROUTING', '-j', 'subnet-tunnel-gw1'),
      N('iptables', '-F', 'subnet-tunnel-gw1'),
      N('iptables', '-X', 'subnet-tunnel-gw1'),
      N('ip6tables', '-D', 'OUTPUT', '-j', 'subnet-tunnel-gw1'),
      N('ip6tables', '-D', 'PREROUTING', '-j', 'subnet-tunnel-gw1'),
      N('ip6tables', '-F', 'subnet-tunnel-gw1'),
      N('ip6tables', '-X', 'subnet-tunnel-gw1'),
      N('iptables', '-D', 'OUTPUT', '-j', 'subnet-tunnel-old1'),
      N('iptables', '-F', 'subnet-tunnel-old1'),
      N('iptables', '-X', 'subnet-tunnel-old1'),
    ])
  })

  it('a gateway flag that is not a boolean makes the entry malformed', () => {
    journal.write(entry('bad1', { gateway: 'yes' as unknown as boolean }))
    expect(journal.list()).toEqual([{ file: expect.stringContaining('bad1.json'), error: 'malformed entry' }])
  })

  it('scope fields: a forged file cannot make them argv (malformed entry); well-formed ones revert exactly', async () => {
    const bad: Array<Partial<JournalEntry>> = [
      { gatewayInterfaces: ['br0 -j ACCEPT'] }, { gatewayInterfaces: [] }, { gatewayInterfaces: 'br0' as unknown as string[] },
      { gatewaySources: ['10.0.0.0/8;x'] }, { gatewaySources: [] }, { ownerUid: -1 }, { ownerUid: '0' as unknown as number },
      { dnsGuard: 'yes' as unknown as boolean },
    ]
    bad.forEach((over, i) => journal.write(entry(`bad${i}`, { gateway: true, ...over })))
    expect(journal.list().map((r) => 'error' in r && r.error)).toEqual(bad.map(() => 'malformed entry'))
    fs.rmSync(journal.dir, { recursive: true })
    journal.write(entry('sc1', { gateway: true, gatewayInterfaces: ['br0'], gatewaySources: ['fd88::/64'], ownerUid: 0, dnsGuard: true, families: [6] }))
    const x = new FakeExecutor()
    expect(await cleanupStale(x, { journal, netns: NETNS, isAlive: () => false, scanKernel: false })).toEqual({ removed: ['instance sc1 (nat)'], kept: 0, warnings: [] })
    const T = (table: string, ...a: string[]): string[] => ['ip6tables', '-w', '-t', table, ...a]
    expect(x.calls).toEqual([
      T('nat', '-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '0', '-j', 'subnet-tunnel-sc1'),
      T('nat', '-D', 'PREROUTING', '-i', 'br0', '-s', 'fd88::/64', '-j', 'subnet-tunnel-sc1'),
      T('nat', '-F', 'subnet-tunnel-sc1'),
      T('nat', '-X', 'subnet-tunnel-sc1'),
      T('filter', '-D', 'INPUT', '-j', 'subnet-tunnel-sc1'),
      T('filter', '-F', 'subnet-tunnel-sc1'),
      T('filter', '-X', 'subnet-tunnel-sc1'),
    ])
  })

  it('scan: the DNS guard chain in the filter table is found and removed with its INPUT jump', () => {
    const objs = parseIptablesS('iptables', ['-P INPUT ACCEPT', '-N subnet-tunnel-gd1', '-A INPUT -j subnet-tunnel-gd1',
      '-A subnet-tunnel-gd1 -p udp -m udp --dport 5300 -m conntrack ! --ctstate DNAT -j DROP'].join('\n'), 'filter')
    expect(objs).toEqual([{ id: 'gd1', label: 'iptables filter subnet-tunnel-gd1', revert: [
      ['iptables', '-w', '-t', 'filter', '-D', 'INPUT', '-j', 'subnet-tunnel-gd1'],
      ['iptables', '-w', '-t', 'filter', '-F', 'subnet-tunnel-gd1'],
      ['iptables', '-w', '-t', 'filter', '-X', 'subnet-tunnel-gd1'],
    ] }])
  })

  it('scan: a PREROUTING jump (gateway mode) is deleted before the chain', () => {
    const [obj] = parseIptablesS('iptables', [
      '-N subnet-tunnel-gw2',
      '-A PREROUTING -j subnet-tunnel-gw2',
      '-A OUTPUT -j subnet-tunnel-gw2',
    ].join('\n'))
    expect(obj.revert.map((a) => a.slice(4).join(' '))).toEqual([
      '-D PREROUTING -j subnet-tunnel-gw2', '-D OUTPUT -j subnet-tunnel-gw2', '-F subnet-tunnel-gw2', '-X subnet-tunnel-gw2',
    ])
  })

  it('a real dead pid (a child that exited) counts as dead; "already gone" is success', async () => {
    const { spawnSync } = await import('node:child_process')
    const pid = spawnSync('true').pid
    journal.write(entry('gone1', { helperPid: pid, helperStart: 'x', method: 'nft' }))
    const x = new FakeExecutor().on(() => true, { code: 1, stderr: 'Error: Could not process rule: No such file or directory' })
    const report = await cleanupStale(x, { journal, netns: NETNS, scanKernel: false })
    expect(report.removed).toEqual(['instance gone1 (nft)'])
    expect(journal.list()).toEqual([])
  })

  it('a real failure keeps the entry for a later try', async () => {
    journal.write(entry('stuck1', { method: 'nft' }))
    const x = new FakeExecutor().on(() => true, { code: 1, stderr: 'Error: Operation not permitted' })
    const report = await cleanupStale(x, { journal, netns: NETNS, isAlive: () => false, scanKernel: false })
    expect(report.removed).toEqual([])
    expect(report.warnings).toEqual(['instance stuck1: nft: delete table: Error: Operation not permitted'])
    expect(journal.list()).toHaveLength(1)
  })

  it('safety net: removes our kernel objects that no live entry owns, and nothing else', async () => {
    journal.write(entry('live1', { helperPid: 42 }))
    const iptS = [
      '-P OUTPUT ACCEPT',
      '-N subnet-tunnel-live1',
      '-N subnet-tunnel-orph1',
      '-N docker-chain',
      '-A OUTPUT -p tcp -j subnet-tunnel-live1',
      '-A OUTPUT -p tcp -j subnet-tunnel-orph1',
      '-A subnet-tunnel-orph1 -d 10.0.0.0/8 -p tcp -j REDIRECT --to-ports 4000',
    ].join('\n')
    const x = new FakeExecutor()
      .on((a) => a[0] === 'iptables' && a.includes('-S') && a.includes('nat'), { stdout: iptS })
      .on((a) => a[0] === 'ip6tables' && a.includes('-S'), { code: 127 })
      .on((a) => a.join(' ') === 'nft list tables', { stdout: 'table ip nat\ntable inet subnet-tunnel-orph2\ntable inet subnet-tunnel-live1\ntable inet other\n' })
    const report = await cleanupStale(x, { journal, netns: NETNS, isAlive: (pid) => pid === 42 })
    expect(report.removed).toEqual(['iptables nat subnet-tunnel-orph1', 'nft inet subnet-tunnel-orph2'])
    // after the read-only listings: iptables, ip6tables (nat, filter), nft and the tun backend's (ip link/rule/route)
    expect(x.calls.slice(5 + TUN_SCAN_ARGV.length)).toEqual([
      ['iptables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '-j', 'subnet-tunnel-orph1'],
      ['iptables', '-w', '-t', 'nat', '-F', 'subnet-tunnel-orph1'],
      ['iptables', '-w', '-t', 'nat', '-X', 'subnet-tunnel-orph1'],
      ['nft', 'delete', 'table', 'inet', 'subnet-tunnel-orph2'],
    ])
  })

  it('scan: the protocol-agnostic jump (DNS capture needs UDP) is deleted exactly too', () => {
    const objs = parseIptablesS('ip6tables', ['-N subnet-tunnel-dns1', '-A OUTPUT -j subnet-tunnel-dns1',
      '-A subnet-tunnel-dns1 -d fd98::53/128 -p udp -m udp --dport 53 -j REDIRECT --to-ports 5300'].join('\n'))
    expect(objs).toEqual([{ id: 'dns1', label: 'ip6tables nat subnet-tunnel-dns1', revert: [
      ['ip6tables', '-w', '-t', 'nat', '-D', 'OUTPUT', '-j', 'subnet-tunnel-dns1'],
      ['ip6tables', '-w', '-t', 'nat', '-F', 'subnet-tunnel-dns1'],
      ['ip6tables', '-w', '-t', 'nat', '-X', 'subnet-tunnel-dns1'],
    ] }])
  })

  it('parsers ignore look-alikes', () => {
    expect(parseIptablesS('iptables', '-N subnet-tunnel-UPPER\n-N subnet-tunnel-toolongtoolongtoolong\n-N xsubnet-tunnel-a')).toEqual([])
    expect(parseNftTables('table ip subnet-tunnel-a1\ntable inet subnet-tunnel-a1 extra\n')).toEqual([])
  })
})
