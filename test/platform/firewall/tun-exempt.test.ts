import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { firewallFor } from '../../../src/platform/firewall/choose-method'
import { tunPlan } from '../../../src/platform/firewall/tun'
import { parseExemptRules, tunExemptApply } from '../../../src/platform/firewall/tun-exempt'
import { tunRevert, tunTable } from '../../../src/platform/firewall/tun-naming'
import { parseTunLeftovers } from '../../../src/platform/firewall/tun-scan'
import type { CaptureSpec } from '../../../src/platform/firewall/types'
import { cleanupStale, scanKernelObjects } from '../../../src/platform/helper/cleanup'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import { parseRequest } from '../../../src/platform/helper/protocol'
import { specToWire } from '../../../src/platform/helper/protocol-wire'
import { FakeExecutor } from '../../fakes/fake-executor'

const ID = '1a2b3c4d'
const DEV = 'st1a2b3c4d'
const T = String(tunTable(ID))
const dnsSpec = (over: Partial<CaptureSpec> = {}, ports = [40053]): CaptureSpec => ({
  instanceId: ID,
  listenPort: 0,
  include: [parseCidr('10.0.0.0/16')],
  exclude: [],
  dns: { servers: ['10.250.0.54', 'fd00:250::54'], port: 4053, exemptSourcePorts: ports },
  tunOwner: 1000,
  ...over,
})
const goto = (f: 4 | 6, proto: string, port = 40053, uid = 1000): string[] =>
  ['ip', `-${f}`, 'rule', 'add', 'priority', '5353', 'iif', 'lo', 'uidrange', `${uid}-${uid}`, 'ipproto', proto, 'sport', String(port), 'dport', '53', 'goto', '5355']
const gotoDel = (f: 4 | 6, proto: string, port = 40053): string[] =>
  ['ip', `-${f}`, 'rule', 'del', 'priority', '5353', 'iif', 'lo', 'ipproto', proto, 'sport', String(port), 'dport', '53', 'goto', '5355']
const target = (f: 4 | 6, verb = 'add'): string[] => ['ip', `-${f}`, 'rule', verb, 'priority', '5355', 'iif', DEV, 'nop']

describe("tun split DNS: our forwarder's queries skip the tunnel rules", () => {
  it('per family with a captured server: the nop target, then a UDP and a TCP goto of the owner, after the routes and before the 5354 rules', () => {
    const p = tunPlan(dnsSpec())
    const rules = p.apply.filter((a) => a[2] === 'rule')
    expect(rules).toEqual([
      target(4), goto(4, 'udp'), goto(4, 'tcp'),
      target(6), goto(6, 'udp'), goto(6, 'tcp'),
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'lookup', T],
      ['ip', '-6', 'rule', 'add', 'priority', '5354', 'lookup', T],
    ])
    const lastRoute = p.apply.map((a) => a[2]).lastIndexOf('route')
    expect(lastRoute).toBeLessThan(p.apply.findIndex((a) => a.join(' ') === target(4).join(' ')))
    // the revert: rules and tables as before, then the gotos (any uid) and the targets, then the link
    expect(p.revert).toEqual([
      ['ip', '-4', 'rule', 'del', 'priority', '5354', 'lookup', T],
      ['ip', '-4', 'route', 'flush', 'table', T],
      ['ip', '-6', 'rule', 'del', 'priority', '5354', 'lookup', T],
      ['ip', '-6', 'route', 'flush', 'table', T],
      gotoDel(4, 'udp'), gotoDel(4, 'tcp'), gotoDel(6, 'udp'), gotoDel(6, 'tcp'),
      target(4, 'del'), target(6, 'del'),
      ['ip', 'link', 'del', 'dev', DEV],
    ])
  })

  it('only the families with captured servers; duplicate ports once; none without exempt ports (no split DNS)', () => {
    const v4 = dnsSpec({ dns: { servers: ['10.250.0.54'], port: 4053, exemptSourcePorts: [40053, 40053] } })
    expect(tunExemptApply(v4, DEV)).toEqual([target(4), goto(4, 'udp'), goto(4, 'tcp')])
    expect(tunExemptApply(dnsSpec({}, []), DEV)).toEqual([])
    expect(tunPlan(dnsSpec({}, [])).apply.filter((a) => a.includes('5353') || a.includes('5355'))).toEqual([])
    // root's own tunnel: uid 0
    expect(tunExemptApply(dnsSpec({ tunOwner: 0, dns: { servers: ['10.250.0.54'], port: 4053, exemptSourcePorts: [5300] } }), DEV)[1]).toEqual(goto(4, 'udp', 5300, 0))
  })

  it('an exempt port that is not a port never reaches argv (the plan checks the DNS part too)', () => {
    for (const bad of [0, 65536, 1.5, -1]) expect(() => tunPlan(dnsSpec({}, [bad]))).toThrow(/exempt source port/)
    expect(() => tunPlan(dnsSpec({ dns: { servers: ['10.0.0.1; rm'], port: 4053, exemptSourcePorts: [] } }))).toThrow(/not an IP address/)
  })

  it('the helper protocol checks the exempt ports of a tun spec, and carries them', () => {
    const line = (ports: unknown): string => JSON.stringify({
      id: 1, op: 'apply', method: 'tun',
      spec: { instanceId: 'ab12', listenPort: 0, include: ['10.0.0.0/8'], exclude: [], tunOwner: 1000, dns: { servers: ['10.0.0.2'], port: 4053, exemptSourcePorts: ports } },
    })
    expect(() => parseRequest(line([0]))).toThrow(/exemptSourcePorts\[0\] must be an integer/)
    expect(() => parseRequest(line(['53']))).toThrow(/exemptSourcePorts\[0\]/)
    expect(() => parseRequest(line(new Array(17).fill(5000)))).toThrow(/at most 16/)
    const s = dnsSpec({ instanceId: 'ab12' })
    expect(parseRequest(JSON.stringify({ id: 1, op: 'apply', method: 'tun', spec: specToWire(s) }))).toEqual({ id: 1, op: 'apply', method: 'tun', spec: s })
  })
})

describe('tun split DNS in the journal and the leftover scan', () => {
  const withJournal = async (fn: (j: Journal, dir: string) => Promise<void>): Promise<void> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-tunx-'))
    try {
      await fn(new Journal(dir), dir)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }

  it('the journal records the ports; a dead instance is reverted with its gotos and targets', () =>
    withJournal(async (journal) => {
      const x = new FakeExecutor()
      const s = new HelperServer({ exec: x, journal, netns: 7, pid: process.pid, mainPid: 1, allowTun: true })
      const r = await s.handleLine(JSON.stringify({ id: 1, op: 'apply', method: 'tun', spec: specToWire(dnsSpec()) }))
      expect(r).toMatchObject({ ok: true })
      const read = journal.list()[0]
      const entry = 'entry' in read ? read.entry : undefined
      expect(entry).toMatchObject({ method: 'tun', families: [4, 6], dnsExemptPorts: [40053] })
      // The helper is gone (SIGKILL): cleanup rebuilds the revert from the record.
      const c = new FakeExecutor()
      const report = await cleanupStale(c, { journal, netns: 7, isAlive: () => false, scanKernel: false })
      expect(report.removed).toEqual([`instance ${ID} (tun)`])
      expect(c.calls).toEqual(tunRevert(ID, [4, 6], {}, [40053]))
      expect(c.calls).toContainEqual(gotoDel(6, 'tcp'))
      expect(firewallFor('tun').revert(entry!)).toEqual(tunPlan(dnsSpec()).revert)
    }))

  it('a journal record with ports that are not ports is refused, not run', () =>
    withJournal(async (journal, dir) => {
      fs.writeFileSync(path.join(dir, `${ID}.json`), JSON.stringify({
        id: ID, helperPid: 999999, helperStart: 'x', mainPid: 1, netns: 7, method: 'tun', families: [4],
        dnsExemptPorts: ['40053; rm -rf /'], revert: [], createdAt: new Date().toISOString(),
      }), { mode: 0o600 })
      expect(journal.list()[0]).toHaveProperty('error')
    }))

  const RULES4 = [
    '0:\tfrom all lookup local',
    '5353:\tfrom all iif lo uidrange 1000-1000 ipproto udp sport 40053 dport 53 goto 5355',
    '5353:\tfrom all iif lo uidrange 1000-1000 ipproto tcp sport 40053 dport 53 goto 5355 [unresolved]',
    // not ours: another priority, another shape, another destination port
    '5353:\tfrom all iif lo ipproto udp sport 40053 dport 54 goto 5355',
    '5352:\tfrom all iif lo uidrange 1000-1000 ipproto udp sport 40053 dport 53 goto 5355',
    `5355:\tfrom all iif ${DEV} [detached] nop`,
    '5355:\tfrom all iif eth0 nop',
    '32766:\tfrom all lookup main',
  ].join('\n')

  it('the scan finds gotos of our shape and nop targets of our devices, nothing else', () => {
    expect(parseExemptRules(RULES4, 4).map((r) => (r.kind === 'goto' ? `${r.proto} ${r.port}` : r.dev))).toEqual(['udp 40053', 'tcp 40053', DEV])
    const found = parseTunLeftovers(['', RULES4, '', '', ''])
    expect(found.map((o) => o.label)).toEqual([
      'IPv4 rule udp sport 40053 dport 53 goto (split DNS)',
      'IPv4 rule tcp sport 40053 dport 53 goto (split DNS)',
      `IPv4 rule iif ${DEV} nop (split DNS)`,
    ])
    expect(found[0].revert).toEqual([gotoDel(4, 'udp')])
    expect(found[2]).toMatchObject({ id: ID, revert: [target(4, 'del')] })
    // a goto belongs to any live instance whose target is there; a target to its own id
    expect(found[0].ownedBy?.(ID)).toBe(true)
    expect(found[0].ownedBy?.('ffff')).toBe(false)
  })

  it("cleanup leaves a live instance's exemption alone and removes one nobody's target stands behind", () =>
    withJournal(async (journal) => {
      journal.write({
        id: ID, helperPid: process.pid, helperStart: '', mainPid: 1, netns: 7, method: 'tun', families: [4],
        revert: [], createdAt: new Date().toISOString(),
      })
      const live = [
        '5353:\tfrom all iif lo uidrange 1000-1000 ipproto udp sport 40053 dport 53 goto 5355',
        `5355:\tfrom all iif ${DEV} nop`,
      ].join('\n')
      const x = new FakeExecutor().on((a) => a.join(' ') === 'ip -4 rule show', { stdout: live })
      expect((await scanKernelObjects(x, 'linux')).map((o) => o.label)).toContain(`IPv4 rule iif ${DEV} nop (split DNS)`)
      const kept = await cleanupStale(x, { journal, netns: 7, isAlive: (pid) => pid === process.pid, platform: 'linux' })
      expect(kept.removed).toEqual([])
      // the instance died and its journal entry is gone: both are removed
      journal.remove(ID)
      const y = new FakeExecutor().on((a) => a.join(' ') === 'ip -4 rule show', { stdout: live })
      const gone = await cleanupStale(y, { journal, netns: 7, isAlive: () => false, platform: 'linux' })
      expect(gone.removed.sort()).toEqual(['IPv4 rule iif st1a2b3c4d nop (split DNS)', 'IPv4 rule udp sport 40053 dport 53 goto (split DNS)'])
      expect(y.calls).toContainEqual(gotoDel(4, 'udp'))
      expect(y.calls).toContainEqual(target(4, 'del'))
    }))

  it('targets and gotos in the IPv6 listing are IPv6 objects', () => {
    const rules6 = `5353:\tfrom all iif lo uidrange 0-0 ipproto tcp sport 5300 dport 53 goto 5355\n5355:\tfrom all iif ${DEV} nop\n`
    const found = parseTunLeftovers(['', '', rules6, '', ''])
    expect(found.map((o) => o.revert)).toEqual([[gotoDel(6, 'tcp', 5300)], [target(6, 'del')]])
  })

  it('include-free specs (route-by-name only) plan a rule per learnt family and no routes', () => {
    const p = tunPlan({ instanceId: ID, listenPort: 0, include: [], exclude: [parseCidr('10.250.0.1/32')], tunOwner: 1000, learn: { families: [4, 6] } })
    expect(p.apply.filter((a) => a[2] === 'route')).toEqual([])
    expect(p.apply.slice(-2)).toEqual([
      ['ip', '-4', 'rule', 'add', 'priority', '5354', 'lookup', T],
      ['ip', '-6', 'rule', 'add', 'priority', '5354', 'lookup', T],
    ])
  })
})
