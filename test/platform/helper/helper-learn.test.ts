/**
 * --route-by-name through the helper: the learn request is validated like every other (special
 * ranges, TTL, count, unknown fields), refused for what the applied spec excludes or does not
 * capture, bounded in number and rate, and turned into each backend's argv: nft set elements
 * with kernel timeouts (refreshed by delete+add), iptables rules and tun routes removed by the
 * helper's timer.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MAX_NEW_LEARNT_PER_MINUTE } from '../../../src/config/learn-limits'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import { parseRequest } from '../../../src/platform/helper/protocol'
import { FakeExecutor } from '../../fakes/fake-executor'

let dir: string
let journal: Journal
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-learn-'))
  journal = new Journal(dir)
})
afterEach(() => {
  vi.useRealTimers()
  fs.rmSync(dir, { recursive: true, force: true })
})

const spec = (extra: object = {}) => ({ instanceId: 'ab12', listenPort: 4000, include: [], exclude: ['10.250.0.1/32', '192.168.1.0/24'], learn: { families: [4, 6] }, ...extra })
const applyLine = (method: string, extra: object = {}): string => JSON.stringify({ id: 1, op: 'apply', method, spec: spec(extra) })
const learnLine = (id: number, entries: unknown): string => JSON.stringify({ id, op: 'learn', entries })

function server(x: FakeExecutor): HelperServer {
  return new HelperServer({ exec: x, journal, netns: 77, pid: process.pid, mainPid: 1, allowTun: true })
}

describe('learn request validation', () => {
  it.each([
    ['0.0.0.0', /unspecified/],
    ['127.0.0.1', /loopback/],
    ['::1', /loopback/],
    ['169.254.1.1', /linkLocal/],
    ['fe80::1', /linkLocal/],
    ['224.0.0.1', /multicast/],
    ['255.255.255.255', /broadcast/],
    ['::ffff:10.0.0.1', /ipv4Mapped/],
    ['10.0.0.0/8', /not an IP address/],
    ['db.corp.internal', /not an IP address/],
  ])('refuses %s', (address, why) => {
    expect(() => parseRequest(learnLine(1, [{ address, ttl: 60 }]))).toThrow(why)
  })

  it('refuses bad TTLs, too many entries and unknown fields; accepts a plain one', () => {
    expect(() => parseRequest(learnLine(1, [{ address: '10.0.0.1', ttl: 0 }]))).toThrow(/ttl/)
    expect(() => parseRequest(learnLine(1, [{ address: '10.0.0.1', ttl: 1.5 }]))).toThrow(/ttl/)
    expect(() => parseRequest(learnLine(1, [{ address: '10.0.0.1', ttl: 10 ** 9 }]))).toThrow(/ttl/)
    expect(() => parseRequest(learnLine(1, []))).toThrow(/entries/)
    expect(() => parseRequest(learnLine(1, Array.from({ length: 65 }, (_, i) => ({ address: `10.0.0.${i + 1}`, ttl: 60 }))))).toThrow(/entries/)
    expect(() => parseRequest(learnLine(1, [{ address: '10.0.0.1', ttl: 60, prefix: 0 }]))).toThrow(/unknown field "prefix"/)
    expect(parseRequest(learnLine(3, [{ address: 'FD00::5', ttl: 60 }]))).toEqual({ id: 3, op: 'learn', entries: [{ address: { family: 6, address: 'fd00::5', prefix: 128 }, ttl: 60 }] })
  })

  it('an empty include is refused unless the spec learns; spec.learn is checked', () => {
    expect(() => parseRequest(JSON.stringify({ id: 1, op: 'apply', method: 'nft', spec: spec({ learn: undefined }) }))).toThrow(/include is empty/)
    expect(() => parseRequest(applyLine('nft', { learn: { families: [5] } }))).toThrow(/families/)
    expect(() => parseRequest(applyLine('nft', { learn: { families: [4, 4] } }))).toThrow(/families/)
    expect(parseRequest(applyLine('nft'))).toMatchObject({ op: 'apply', spec: { include: [], learn: { families: [4, 6] } } })
  })
})

describe('HelperServer learn', () => {
  it('nft: a set per family with timeouts and a redirect rule after every exclude; elements added with their timeout', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    expect(await s.handleLine(applyLine('nft'))).toMatchObject({ ok: true, result: { families: [4, 6] } })
    const batch = x.calls[0].join(' ')
    expect(batch).toContain('add set inet subnet-tunnel-ab12 learnt4 { type ipv4_addr ; flags timeout ; size 4096 ; }')
    expect(batch).toContain('add set inet subnet-tunnel-ab12 learnt6 { type ipv6_addr ; flags timeout ; size 4096 ; }')
    expect(batch.indexOf('ip daddr @learnt4 meta l4proto tcp redirect to :4000')).toBeGreaterThan(batch.indexOf('ip daddr 192.168.1.0/24 return'))
    expect(await s.handleLine(learnLine(2, [{ address: '10.251.0.10', ttl: 70 }, { address: 'fd00:251::10', ttl: 70 }]))).toEqual({ id: 2, ok: true, result: { added: 2, refreshed: 0 } })
    expect(x.calls.slice(1)).toEqual([
      ['nft', 'add', 'element', 'inet', 'subnet-tunnel-ab12', 'learnt4', '{', '10.251.0.10 timeout 70s', '}'],
      ['nft', 'add', 'element', 'inet', 'subnet-tunnel-ab12', 'learnt6', '{', 'fd00:251::10 timeout 70s', '}'],
    ])
    // A shorter time than held: nothing to do. A longer one: delete and add in one transaction;
    // if that fails (it expired meanwhile), a plain add.
    x.calls.length = 0
    expect(await s.handleLine(learnLine(3, [{ address: '10.251.0.10', ttl: 30 }]))).toMatchObject({ ok: true, result: { added: 0, refreshed: 0 } })
    expect(x.calls).toEqual([])
    x.failAt(0, 'Error: Could not process rule: No such file or directory')
    expect(await s.handleLine(learnLine(4, [{ address: '10.251.0.10', ttl: 300 }]))).toMatchObject({ ok: true, result: { refreshed: 1 } })
    expect(x.calls.map((c) => c.join(' '))).toEqual([
      'nft delete element inet subnet-tunnel-ab12 learnt4 { 10.251.0.10 } ; add element inet subnet-tunnel-ab12 learnt4 { 10.251.0.10 timeout 300s }',
      'nft add element inet subnet-tunnel-ab12 learnt4 { 10.251.0.10 timeout 300s }',
    ])
  })

  it("refuses what the spec excludes (the bastion, this machine's networks) and families it does not capture", async () => {
    const x = new FakeExecutor()
    const s = server(x)
    await s.handleLine(applyLine('nft', { learn: { families: [4] } }))
    x.calls.length = 0
    expect(await s.handleLine(learnLine(2, [{ address: '10.250.0.1', ttl: 60 }]))).toMatchObject({ ok: false, error: { code: 'HELPER', message: expect.stringMatching(/excluded 10\.250\.0\.1\/32/) } })
    expect(await s.handleLine(learnLine(3, [{ address: '10.0.0.1', ttl: 60 }, { address: '192.168.1.7', ttl: 60 }]))).toMatchObject({ ok: false, error: { message: expect.stringMatching(/192\.168\.1\.0\/24/) } })
    expect(await s.handleLine(learnLine(4, [{ address: 'fd00::1', ttl: 60 }]))).toMatchObject({ ok: false, error: { message: expect.stringMatching(/IPv6 is not captured/) } })
    // A refused request runs nothing at all, not even its acceptable entries.
    expect(x.calls).toEqual([])
  })

  it('refuses learn without an applied learning instance', async () => {
    const s = server(new FakeExecutor())
    expect(await s.handleLine(learnLine(1, [{ address: '10.0.0.1', ttl: 60 }]))).toMatchObject({ ok: false, error: { code: 'HELPER' } })
    await s.handleLine(JSON.stringify({ id: 2, op: 'apply', method: 'nft', spec: { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/8'], exclude: [] } }))
    expect(await s.handleLine(learnLine(3, [{ address: '10.1.0.1', ttl: 60 }]))).toMatchObject({ ok: false, error: { message: expect.stringMatching(/learnt addresses/) } })
  })

  it('pf cannot learn: refused at apply, before anything runs', async () => {
    const x = new FakeExecutor()
    expect(await server(x).handleLine(applyLine('pf'))).toMatchObject({ ok: false, error: { code: 'FW_UNSUPPORTED' } })
    expect(x.calls).toEqual([])
  })

  it('nat: one REDIRECT rule per address at the end of the chain, deleted by the timer', async () => {
    vi.useFakeTimers()
    const x = new FakeExecutor()
    const s = server(x)
    await s.handleLine(applyLine('nat'))
    x.calls.length = 0
    await s.handleLine(learnLine(2, [{ address: '10.251.0.10', ttl: 20 }]))
    expect(x.calls).toEqual([['iptables', '-w', '-t', 'nat', '-A', 'subnet-tunnel-ab12', '-d', '10.251.0.10/32', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000']])
    await vi.advanceTimersByTimeAsync(19_000)
    expect(x.calls.length).toBe(1)
    await vi.advanceTimersByTimeAsync(1_100)
    expect(x.calls[1]).toEqual(['iptables', '-w', '-t', 'nat', '-D', 'subnet-tunnel-ab12', '-d', '10.251.0.10/32', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4000'])
  })

  it('tun: a host route into the device in its table, removed by the timer; a refresh only moves the timer', async () => {
    vi.useFakeTimers()
    const x = new FakeExecutor()
    const s = server(x)
    expect(await s.handleLine(applyLine('tun', { listenPort: 0, tunOwner: process.getuid?.() ?? 0 }))).toMatchObject({ ok: true })
    x.calls.length = 0
    await s.handleLine(learnLine(2, [{ address: 'fd00:251::10', ttl: 20 }]))
    expect(x.calls[0]!.slice(0, 6)).toEqual(['ip', '-6', 'route', 'add', 'fd00:251::10/128', 'dev'])
    await vi.advanceTimersByTimeAsync(10_000)
    await s.handleLine(learnLine(3, [{ address: 'fd00:251::10', ttl: 20 }]))
    expect(x.calls.length).toBe(1)
    await vi.advanceTimersByTimeAsync(15_000)
    expect(x.calls.length).toBe(1)
    await vi.advanceTimersByTimeAsync(6_000)
    expect(x.calls[1]!.slice(0, 5)).toEqual(['ip', '-6', 'route', 'del', 'fd00:251::10/128'])
  })

  it('bounds the rate of new addresses', async () => {
    const x = new FakeExecutor()
    const s = server(x)
    await s.handleLine(applyLine('nft', { learn: { families: [4] } }))
    let id = 2
    let refused: unknown
    for (let n = 0; n <= MAX_NEW_LEARNT_PER_MINUTE; n += 60) {
      const entries = Array.from({ length: 60 }, (_, i) => ({ address: `10.${(n + i) >> 16}.${((n + i) >> 8) & 255}.${((n + i) & 255) + 0}`, ttl: 600 })).filter((e) => !e.address.endsWith('.0'))
      const r = await s.handleLine(learnLine(id++, entries))
      if (!r.ok) {
        refused = r
        break
      }
    }
    expect(refused).toMatchObject({ ok: false, error: { message: expect.stringMatching(/new addresses in a minute/) } })
  })
})
