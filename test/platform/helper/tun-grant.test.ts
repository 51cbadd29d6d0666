// The tun grant (tun-grant.ts): method tun only for a helper started with --allow-tun, and no
// default route or huge share of the address space into a device a user owns.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { helperLaunchArgv } from '../../../src/platform/helper/helper-launch'
import { Journal } from '../../../src/platform/helper/journal'
import { checkTunGrant, coveredAddresses, parseHelperArgv, TUN_GRANT_FLAG } from '../../../src/platform/helper/tun-grant'
import type { CaptureSpec } from '../../../src/platform/firewall/types'

const spec = (include: string[], over: Partial<CaptureSpec> = {}): CaptureSpec => ({
  instanceId: 'ab12', listenPort: 0, include: include.map(parseCidr), exclude: [], tunOwner: 1000, ...over,
})
const refusal = (s: CaptureSpec, allowTun = true): string => {
  try {
    checkTunGrant(s, { allowTun })
  } catch (e) {
    return (e as Error).message
  }
  return 'granted'
}
/** 10.0.0.0/8 … as n consecutive /8s starting at first. */
const slash8s = (first: number, n: number): string[] => Array.from({ length: n }, (_, i) => `${first + i}.0.0.0/8`)

describe('the helper argv', () => {
  it('nothing, or exactly --allow-tun; anything else is refused, not ignored', () => {
    expect(parseHelperArgv([])).toEqual({ allowTun: false })
    expect(parseHelperArgv([TUN_GRANT_FLAG])).toEqual({ allowTun: true })
    for (const bad of [['--allow-tun', '--allow-tun'], ['--allow-tun=yes'], ['-x'], ['--allow-tun', 'x'], ['']]) {
      expect(() => parseHelperArgv(bad), JSON.stringify(bad)).toThrow(/unexpected arguments/)
    }
  })

  it('the main process asks for the grant only when told to, through sudo and as root alike', () => {
    const base = { execPath: '/usr/bin/node', helperPath: '/opt/st/dist/platform/helper/helper-main.js' }
    expect(helperLaunchArgv({ ...base, uid: 1000, tty: false }).args).toEqual(['-n', '--', base.execPath, base.helperPath])
    expect(helperLaunchArgv({ ...base, uid: 1000, tty: false, allowTun: true }).args).toEqual(['-n', '--', base.execPath, base.helperPath, '--allow-tun'])
    expect(helperLaunchArgv({ ...base, uid: 0, tty: false, allowTun: true }).args).toEqual([base.helperPath, '--allow-tun'])
  })
})

describe('checkTunGrant', () => {
  it('without the grant, tun is refused for every spec and every owner, root included', () => {
    expect(refusal(spec(['10.1.0.0/16']), false)).toMatch(/not granted \(the helper was started without --allow-tun\)/)
    expect(refusal(spec(['10.1.0.0/16'], { tunOwner: 0 }), false)).toMatch(/not granted/)
  })

  it('a user-owned device: no default route, nothing wider than /8 or /16', () => {
    expect(refusal(spec(['0.0.0.0/0']))).toMatch(/0\.0\.0\.0\/0 is wider than \/8: the device's owner \(uid 1000\) would read every local user's traffic/)
    expect(refusal(spec(['::/0']))).toMatch(/::\/0 is wider than \/16/)
    expect(refusal(spec(['0.0.0.0/1', '128.0.0.0/1']))).toMatch(/wider than \/8/)
    expect(refusal(spec(['10.0.0.0/7']))).toMatch(/wider than \/8/)
    expect(refusal(spec(['fc00::/7']))).toMatch(/wider than \/16/)
    expect(refusal(spec(['10.0.0.0/8', 'fd00::/16']))).toBe('granted')
  })

  it('nor a default route cut into many allowed pieces: at most two /8s (/16s) in all, nested ones counted once', () => {
    expect(refusal(spec(slash8s(1, 256 - 1)))).toMatch(/IPv4 networks together are larger than two \/8s/)
    expect(refusal(spec(slash8s(10, 3)))).toMatch(/larger than two \/8s/)
    expect(refusal(spec(['fd00::/16', 'fd01::/16', 'fd02::/16']))).toMatch(/IPv6 networks together are larger than two \/16s/)
    // all of RFC 1918 fits; a network inside another, or twice, adds nothing
    expect(refusal(spec(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '10.1.0.0/16', '10.0.0.0/8']))).toBe('granted')
  })

  it('captured nameservers count as routed networks too (host routes: harmless alone)', () => {
    const dns = { servers: ['1.1.1.1', '8.8.8.8'], port: 4053, exemptSourcePorts: [] }
    expect(refusal(spec(['10.0.0.0/8'], { dns }))).toBe('granted')
    expect(refusal(spec(['10.0.0.0/8', '11.0.0.0/8'], { dns }))).toMatch(/larger than two \/8s/)
  })

  it('a device owned by root (the whole tunnel runs as root) may route anything', () => {
    expect(refusal(spec(['0.0.0.0/0', '::/0'], { tunOwner: 0 }))).toBe('granted')
  })

  it('coveredAddresses: the size of the union', () => {
    expect(coveredAddresses(['10.0.0.0/8', '10.1.0.0/16', '192.168.1.0/24', 'fd00::/64'].map(parseCidr), 4)).toBe(2n ** 24n + 256n)
    expect(coveredAddresses(['fd00::/64', 'fd00::/48', 'fd00:0:0:1::/64'].map(parseCidr), 6)).toBe(2n ** 80n)
    expect(coveredAddresses(['0.0.0.0/0'].map(parseCidr), 4)).toBe(2n ** 32n)
    expect(coveredAddresses([], 6)).toBe(0n)
  })
})

describe('the helper enforces the grant before anything is journalled or run', () => {
  let dir: string
  let journal: Journal
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-tun-grant-'))
    journal = new Journal(dir)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  const line = (include: string[], owner = 1000): string =>
    JSON.stringify({ id: 4, op: 'apply', method: 'tun', spec: { instanceId: 'ab12', listenPort: 0, include, exclude: [], tunOwner: owner } })
  const server = (x: FakeExecutor, allowTun: boolean): HelperServer =>
    new HelperServer({ exec: x, journal, netns: 7, pid: process.pid, mainPid: 1, callerUid: 1000, allowTun })

  it('the ordinary helper (no --allow-tun): refused with a pointer to the tun rule; nothing run, no journal', async () => {
    const x = new FakeExecutor()
    const r = await server(x, false).handleLine(line(['10.1.0.0/16']))
    expect(r).toMatchObject({ ok: false, error: { code: 'HELPER', message: expect.stringMatching(/not granted/), hint: expect.stringMatching(/subnet-tunnel sudoers/) } })
    expect(x.calls).toEqual([])
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('with the grant: 0/0 for the caller\'s own device is refused; a /16 applies', async () => {
    const x = new FakeExecutor()
    const s = server(x, true)
    expect(await s.handleLine(line(['0.0.0.0/0']))).toMatchObject({ ok: false, error: { message: expect.stringMatching(/wider than \/8/) } })
    expect(x.calls).toEqual([])
    expect(fs.readdirSync(dir)).toEqual([])
    expect(await s.handleLine(line(['10.1.0.0/16']))).toMatchObject({ ok: true, result: { method: 'tun' } })
  })

  it('a loose rp_filter on `all` (it overrides the device\'s) is reported', async () => {
    const logs: string[] = []
    const x = new FakeExecutor().on((a) => a.join(' ') === 'sysctl -n net.ipv4.conf.all.rp_filter', { stdout: '2\n' })
    const s = new HelperServer({ exec: x, journal, netns: 7, pid: process.pid, mainPid: 1, allowTun: true, log: (l, m) => logs.push(`${l}: ${m}`) })
    expect(await s.handleLine(line(['10.1.0.0/16']))).toMatchObject({ ok: true })
    expect(logs).toContainEqual(expect.stringMatching(/^warn: tun: net\.ipv4\.conf\.all\.rp_filter is 2 \(loose\).*stab12/))
  })
})
