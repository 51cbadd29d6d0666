// The privileged helper against a hostile caller (anyone who may run it through sudo): what the
// threat model in the README promises, one claim per test.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal, type JournalEntry } from '../../../src/platform/helper/journal'
import { MAX_LINE } from '../../../src/platform/helper/protocol'

let dir: string
let journal: Journal
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-helper-threats-'))
  journal = new Journal(dir)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const server = (x: FakeExecutor): HelperServer => new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1 })

const spec = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], ...over,
})
const apply = (s: unknown, method: unknown = 'nat', extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ id: 9, op: 'apply', method, spec: s, ...extra })

describe('helper: an instance id already in the journal belongs to someone else', () => {
  for (const method of ['nat', 'nft'] as const) {
    it(`${method}: apply is refused before any command runs, and the other entry is left intact`, async () => {
      // Another instance (another netns, another helper) owns "ab12".
      const other: JournalEntry = {
        id: 'ab12', helperPid: 4242, helperStart: '1', mainPid: 4241, netns: 12345, method: 'nft', families: [4],
        revert: [['nft', 'delete', 'table', 'inet', 'subnet-tunnel-ab12']], createdAt: new Date(0).toISOString(),
      }
      journal.write(other)
      const before = fs.readFileSync(journal.fileOf('ab12'), 'utf8')
      // The kernel would refuse `-N`/`create table` for an existing object; before the fix the
      // failed apply then ran the revert list, deleting the other instance's rules.
      const x = new FakeExecutor().on((a) => a.includes('-N') || a.includes('create'), { code: 1, stderr: 'exists' })
      const r = await server(x).handleLine(apply(spec(), method))
      expect(r).toMatchObject({ id: 9, ok: false, error: { code: 'HELPER', message: 'instance id ab12 is already in use' } })
      expect(x.calls).toEqual([])
      expect(fs.readFileSync(journal.fileOf('ab12'), 'utf8')).toBe(before)
    })
  }

  it('two helpers racing for one id: exactly one applies; the loser runs nothing, and the winner keeps its objects and entry', async () => {
    // The kernel, shared by both helpers: a device name can be added once.
    const devices = new Set<string>()
    const kernel = (): FakeExecutor => new FakeExecutor().on(() => true, (a) => {
      if (a[1] === 'tuntap' && a[2] === 'add') {
        if (devices.has(a[4])) return { code: 1, stderr: 'ioctl(TUNSETIFF): Device or resource busy' }
        devices.add(a[4])
      }
      if (a[1] === 'link' && a[2] === 'del') devices.delete(a[4])
      return undefined
    })
    const xa = kernel()
    const xb = kernel()
    const a = new HelperServer({ exec: xa, journal, netns: 77, pid: 1001, mainPid: 1, allowTun: true })
    const b = new HelperServer({ exec: xb, journal, netns: 78, pid: 1002, mainPid: 1, allowTun: true })
    const tun = spec({ listenPort: 0, tunOwner: 0 })
    // Both requests are in flight together: the tun checks await the (fake) kernel between the
    // id check and the first command, which is where an exists-check-then-write let both pass.
    const [ra, rb] = await Promise.all([a.handleLine(apply(tun, 'tun')), b.handleLine(apply(tun, 'tun'))])
    expect([ra.ok, rb.ok]).toEqual([true, false])
    expect(rb).toMatchObject({ ok: false, error: { code: 'HELPER', message: 'instance id ab12 is already in use' } })
    expect(xb.calls).toEqual([])
    expect(devices).toEqual(new Set(['stab12']))
    const e = journal.list()[0]
    expect('entry' in e && e.entry).toMatchObject({ id: 'ab12', helperPid: 1001, netns: 77 })
  })

  it('a fresh id still applies, and after its revert the same id may be applied again', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    expect(await s.handleLine(apply(spec()))).toMatchObject({ ok: true })
    expect(await s.handleLine('{"id":10,"op":"revert"}')).toMatchObject({ ok: true, result: { reverted: true } })
    expect(await s.handleLine(apply(spec()))).toMatchObject({ ok: true })
  })
})

describe('helper: hostile requests never reach the executor', () => {
  const hostile: Array<[string, string]> = [
    ['shell in a CIDR', apply(spec({ include: ['10.0.0.0/8; rm -rf /'] }))],
    ['command substitution in a CIDR', apply(spec({ include: ['$(id)'] }))],
    ['a host name instead of a CIDR', apply(spec({ include: ['db.corp.internal'] }))],
    ['an nft statement as an exclude', apply(spec({ exclude: ['10.0.0.0/8 } ; flush ruleset ; {'] }))],
    ['path traversal in the instance id', apply(spec({ instanceId: '../../etc/x' }))],
    ['an instance id with a dash (kernel object names)', apply(spec({ instanceId: 'a-b' }))],
    ['an instance id of 17 characters', apply(spec({ instanceId: 'a'.repeat(17) }))],
    ['port 0', apply(spec({ listenPort: 0 }))],
    ['port 65536', apply(spec({ listenPort: 65536 }))],
    ['a port as a string', apply(spec({ listenPort: '4000' }))],
    ['a fractional port', apply(spec({ listenPort: 4000.5 }))],
    ['a DNS server with an nft statement', apply(spec({ dns: { servers: ['1.1.1.1 ; flush ruleset'], port: 5353, exemptSourcePorts: [] } }))],
    ['a DNS server with a zone id', apply(spec({ dns: { servers: ['fe80::1%eth0'], port: 5353, exemptSourcePorts: [] } }))],
    ['an exempt port out of range', apply(spec({ dns: { servers: ['1.1.1.1'], port: 5353, exemptSourcePorts: [70000] } }))],
    ['a user-chosen binary', apply(spec(), 'nat', { argv: ['/bin/sh', '-c', 'id'] })],
    ['a user-chosen file path', apply(spec({ journal: '/etc/passwd' }))],
    ['__proto__ smuggling', apply(spec(), 'nat').replace('"spec":{', '"spec":{"__proto__":{"gateway":true},')],
    ['an unknown method', apply(spec(), 'sh')],
    ['an unknown op', JSON.stringify({ id: 1, op: 'exec', argv: ['id'] })],
    ['a gateway flag that is not a boolean', apply(spec({ gateway: 'yes' }))],
  ]
  for (const [what, line] of hostile) {
    it(`${what}: refused with HELPER, nothing run`, async () => {
      const x = new FakeExecutor()
      const r = await server(x).handleLine(line)
      expect(r.ok).toBe(false)
      expect(!r.ok && r.error.code).toBe('HELPER')
      expect(x.calls).toEqual([])
      expect(fs.readdirSync(dir)).toEqual([])
    })
  }

  it(`a line over ${MAX_LINE} characters is refused without being parsed`, async () => {
    const x = new FakeExecutor()
    const r = await server(x).handleLine(apply(spec({ include: Array(40_000).fill('255.255.255.255/32') })))
    expect(r).toMatchObject({ ok: false, error: { code: 'HELPER' } })
    expect(!r.ok && r.error.message).toMatch(/line longer than/)
    expect(x.calls).toEqual([])
  })
})
