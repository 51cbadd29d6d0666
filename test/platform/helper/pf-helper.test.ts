import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { TunnelError } from '../../../src/errors'
import { cleanupStale } from '../../../src/platform/helper/cleanup'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import type { NatLookFn } from '../../../src/platform/os/pf-device'
import type { NatLookQuery } from '../../../src/platform/os/pf-natlook'
import { parseRequest } from '../../../src/platform/helper/protocol'

let dir: string
let journal: Journal
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-pfhelper-'))
  journal = new Journal(dir)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

const ANCHOR = 'com.apple/subnet-tunnel-ab12'
const FLUSH = ['pfctl', '-a', ANCHOR, '-F', 'all']
const apply = (id = 1, extra: object = {}): string => JSON.stringify({
  id, op: 'apply', method: 'pf',
  spec: { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [], ...extra },
})
const natlook = (id: number, over: Record<string, unknown> = {}): string => JSON.stringify({
  id, op: 'natlook', src: { host: '192.168.1.10', port: 51000 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp', ...over,
})

/** pfctl as the fake executor plays it: -E answers with a token on stderr. */
const pfctl = (token = '4242'): FakeExecutor => new FakeExecutor().on((a) => a[1] === '-E', { stderr: `pf enabled\nToken : ${token}\n` })

function server(x: FakeExecutor, natlookFn?: NatLookFn): HelperServer {
  return new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, ...(natlookFn && { natlook: natlookFn }) })
}

const entry = (): Record<string, unknown> => {
  const e = journal.list()[0]
  return 'entry' in e ? (e.entry as unknown as Record<string, unknown>) : {}
}

describe('helper protocol: natlook', () => {
  it('validates every field', () => {
    expect(parseRequest(natlook(1))).toEqual({
      id: 1, op: 'natlook', src: { host: '192.168.1.10', port: 51000 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp',
    })
    expect(parseRequest(natlook(1, { dst: { host: '0:0:0:0:0:0:0:1', port: 4000 } }))).toMatchObject({ dst: { host: '::1' } })
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ proto: 'icmp' }, /proto must be/],
      [{ src: { host: 'localhost', port: 1 } }, /src.host/],
      [{ src: { host: '10.0.0.1', port: 0 } }, /src.port/],
      [{ dst: { host: '127.0.0.1', port: 4000, extra: 1 } }, /unknown field "extra" in dst/],
      [{ dst: '127.0.0.1:4000' }, /dst must be an object/],
      [{ method: 'pf' }, /unknown field "method"/],
    ]
    for (const [over, msg] of bad) expect(() => parseRequest(natlook(2, over))).toThrow(msg)
  })
})

describe('HelperServer with pf', () => {
  it('apply: journal first, ruleset via stdin, token recorded; revert flushes and releases it', async () => {
    const x = pfctl('18446744073709551615')
    let journalAtLoad: Record<string, unknown> | undefined
    x.on((a) => a.includes('-f'), () => ((journalAtLoad = entry()), undefined))
    const s = server(x)
    expect(await s.handleLine(apply())).toEqual({ id: 1, ok: true, result: { method: 'pf', object: 'subnet-tunnel-ab12', families: [4], steps: 2 } })
    // Before the load the entry had no token; right after -E it has.
    expect(journalAtLoad).toMatchObject({ method: 'pf', revert: [FLUSH] })
    expect(journalAtLoad).not.toHaveProperty('pfToken')
    expect(entry()).toMatchObject({ method: 'pf', pfToken: '18446744073709551615', revert: [FLUSH, ['pfctl', '-X', '18446744073709551615']] })
    expect(x.inputs[0]).toContain('rdr pass on lo0 inet proto tcp to 10.0.0.0/8 -> 127.0.0.1 port 4000')
    // no conntrack on macOS
    expect(x.calls.map((c) => c[0])).toEqual(['pfctl', 'pfctl'])

    expect(await s.handleLine('{"id":2,"op":"revert"}')).toEqual({ id: 2, ok: true, result: { reverted: true } })
    expect(x.calls.slice(2)).toEqual([FLUSH, ['pfctl', '-X', '18446744073709551615']])
    expect(journal.list()).toEqual([])
  })

  it('a reference that is already gone (pfctl -d meanwhile) does not block the revert', async () => {
    const x = pfctl().on((a) => a[1] === '-X', { code: 1, stderr: 'pfctl: Token mismatch' })
    const s = server(x)
    await s.handleLine(apply())
    expect(await s.handleLine('{"id":2,"op":"revert"}')).toEqual({ id: 2, ok: true, result: { reverted: true } })
    expect(journal.list()).toEqual([])
  })

  it('a failing flush keeps state and journal for a retry', async () => {
    const x = pfctl().on((a) => a[3] === '-F', { code: 1, stderr: 'pfctl: Permission denied' })
    const s = server(x)
    await s.handleLine(apply())
    expect(await s.handleLine('{"id":2,"op":"revert"}')).toMatchObject({ ok: false, error: { code: 'FW_APPLY' } })
    expect(s.isApplied).toBe(true)
    expect(journal.list()).toHaveLength(1)
  })

  it('a failed apply leaves no rules and no journal entry', async () => {
    const x = new FakeExecutor().on((a) => a.includes('-f'), { code: 1, stderr: 'stdin:2: syntax error' })
    const s = server(x)
    expect(await s.handleLine(apply())).toMatchObject({ ok: false, error: { code: 'FW_APPLY', message: expect.stringMatching(/^pf: pfctl: load anchor/) } })
    expect(x.calls).toEqual([['pfctl', '-a', ANCHOR, '-f', '-'], FLUSH])
    expect(journal.list()).toEqual([])
    expect(s.isApplied).toBe(false)
  })

  it('natlook answers only for pf rules in place and their redirect ports', async () => {
    const asked: NatLookQuery[] = []
    const fake: NatLookFn = async (q) => (asked.push(q), { host: '10.0.1.20', port: 3306, family: 4 })
    const s = server(pfctl(), fake)
    expect(await s.handleLine(natlook(1))).toMatchObject({ id: 1, ok: false, error: { code: 'HELPER', message: 'natlook: no pf rules are applied' } })
    await s.handleLine(apply(2, { dns: { servers: ['10.0.0.2'], port: 4053, exemptSourcePorts: [] } }))
    expect(await s.handleLine(natlook(3))).toEqual({ id: 3, ok: true, result: { host: '10.0.1.20', port: 3306, family: 4 } })
    expect(await s.handleLine(natlook(4, { dst: { host: '127.0.0.1', port: 4053 }, proto: 'udp' }))).toMatchObject({ ok: true })
    expect(await s.handleLine(natlook(5, { dst: { host: '127.0.0.1', port: 22 } })))
      .toMatchObject({ ok: false, error: { code: 'HELPER', message: expect.stringMatching(/port 22 is not a redirect target/) } })
    expect(asked).toEqual([
      { src: { host: '192.168.1.10', port: 51000 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp' },
      { src: { host: '192.168.1.10', port: 51000 }, dst: { host: '127.0.0.1', port: 4053 }, proto: 'udp' },
    ])
    await s.handleLine('{"id":6,"op":"revert"}')
    expect(await s.handleLine(natlook(7))).toMatchObject({ ok: false })
  })

  it('natlook errors travel as ORIGINAL_DST; nat/nft instances get no natlook', async () => {
    const fail: NatLookFn = async () => {
      throw new TunnelError('ORIGINAL_DST', 'ioctl(DIOCNATLOOK): no pf state')
    }
    const s = server(pfctl(), fail)
    await s.handleLine(apply())
    expect(await s.handleLine(natlook(2))).toMatchObject({ ok: false, error: { code: 'ORIGINAL_DST' } })
    const nft = server(new FakeExecutor(), fail)
    await nft.handleLine(JSON.stringify({ id: 1, op: 'apply', method: 'nft', spec: { instanceId: 'cd34', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [] } }))
    expect(await nft.handleLine(natlook(2))).toMatchObject({ ok: false, error: { code: 'HELPER' } })
  })

  it('natlook is not queued behind a slow request', async () => {
    let release!: () => void
    const x = pfctl()
    const s = server(x, async () => ({ host: '10.0.0.9', port: 80, family: 4 }))
    await s.handleLine(apply())
    // The probe's first pfctl call hangs until released: natlook must answer meanwhile.
    const slow = new Promise<void>((r) => (release = r))
    const exec = x.run.bind(x)
    x.run = async (argv, o) => {
      if (argv[1] === '-s') await slow
      return exec(argv, o)
    }
    const probe = s.handleLine('{"id":2,"op":"probe","method":"pf"}')
    expect(await s.handleLine(natlook(3))).toMatchObject({ id: 3, ok: true })
    release()
    await probe
  })
})

describe('cleanup of a dead pf instance', () => {
  const write = (pfToken?: string): void => journal.write({
    id: 'dead1', helperPid: 999999, helperStart: 'x', mainPid: 1, netns: 77, method: 'pf', families: [4],
    ...(pfToken && { pfToken }), revert: [], createdAt: new Date().toISOString(),
  })

  it('flushes the anchor and releases the recorded token; a gone token still counts as done', async () => {
    write('31337')
    const x = new FakeExecutor().on((a) => a[1] === '-X', { code: 1, stderr: 'pfctl: pf not enabled' })
    const report = await cleanupStale(x, { journal, netns: 77, isAlive: () => false, scanKernel: false })
    expect(x.calls).toEqual([['pfctl', '-a', 'com.apple/subnet-tunnel-dead1', '-F', 'all'], ['pfctl', '-X', '31337']])
    expect(report).toEqual({ removed: ['instance dead1 (pf)'], kept: 0, warnings: [] })
    expect(journal.list()).toEqual([])
  })

  it('on darwin the kernel scan asks pfctl for anchors (and not iptables/nft)', async () => {
    const x = new FakeExecutor().on((a) => a.includes('Anchors'), { stdout: '  com.apple/250.ApplicationFirewall\n  com.apple/subnet-tunnel-orph9\n' })
    const report = await cleanupStale(x, { journal, netns: 77, isAlive: () => false, platform: 'darwin' })
    expect(x.calls).toEqual([['pfctl', '-a', 'com.apple', '-s', 'Anchors'], ['pfctl', '-a', 'com.apple/subnet-tunnel-orph9', '-F', 'all']])
    expect(report.removed).toEqual(['pf anchor com.apple/subnet-tunnel-orph9'])
  })

  it('journal entries with a malformed token are refused', () => {
    fs.writeFileSync(path.join(dir, 'bad1.json'), JSON.stringify({
      id: 'bad1', helperPid: 1, helperStart: 'x', mainPid: 1, netns: 77, method: 'pf', families: [4], pfToken: '1; reboot', revert: [], createdAt: 'now',
    }))
    expect(journal.list()).toEqual([{ file: path.join(dir, 'bad1.json'), error: 'malformed entry' }])
  })
})
