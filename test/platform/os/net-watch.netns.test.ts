/**
 * Root-only: the real NetWatcher (compiled from src/, run as uid 65534 inside a throwaway
 * namespace, as the tunnel would run it) against real kernel changes. Topology, all in
 * namespaces of our own:
 *
 *   client: eth0 192.168.50.2/24 2001:db8:50::2/64 ── gw1 ns (.1, ::1)   default routes via gw1
 *           eth1 192.168.60.2/24 2001:db8:60::2/64 ── gw2 ns (.1, ::1)
 *   bastion 203.0.113.7 (IPv4 watcher) and 2001:db8:77::7 (IPv6 watcher), both beyond the gateways
 *
 * Each step changes the kernel and checks which watcher reports 'changed' and how fast: the
 * latency from the command's return to the event, printed at the end.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { canUseNetns, Netns, nodeEnv, ROOT, sleep, tempDir, waitFor } from '../netns-harness'

const enabled = canUseNetns()
const NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups']
const TABLE = '1392508928' // like the tun backend's policy table (0x53000000 + hash)

const CHILD = `
const { NetWatcher } = require(process.argv[2])
const now = () => performance.timeOrigin + performance.now()
const out = (o) => process.stdout.write(JSON.stringify({ t: now(), ...o }) + '\\n')
const w = new NetWatcher({ bastion: process.argv[3], resume: false, ignoreDevs: ['sttun0'], ignoreTables: ['${TABLE}'] })
w.on('changed', (c) => out({ ev: 'changed', first: performance.timeOrigin + c.firstEventAt, after: c.after ?? null, broken: c.broken, reasons: c.reasons }))
w.on('warning', (e) => out({ ev: 'warning', message: e.message }))
w.start().then(() => out({ ev: 'ready', path: w.path ?? null, monitorPid: w.monitorPid() }))
process.stdin.on('end', () => w.stop().then(() => process.exit(0)))
process.stdin.resume()
`

type Line = { t: number; ev: string; after?: { dev: string; src?: string; up: boolean } | null; broken?: boolean; reasons?: string[]; first?: number; path?: { dev: string; src?: string }; monitorPid?: number; message?: string }

describe.skipIf(!enabled)('NetWatcher in a network namespace', () => {
  let cl: Netns
  let gw1: Netns
  let gw2: Netns
  let work: string
  const children: ChildProcess[] = []
  const watchers: Record<'v4' | 'v6', { proc: ChildProcess; lines: Line[] }> = {} as never
  const latencies: Array<{ step: string; who: string; fromCommandMs: number; firstLineToEventMs: number }> = []

  const now = (): number => performance.timeOrigin + performance.now()

  async function startWatcher(bastion: string): Promise<{ proc: ChildProcess; lines: Line[] }> {
    const proc = spawn('ip', ['netns', 'exec', cl.name, ...NOBODY, process.execPath, path.join(work, 'child.js'),
      path.join(work, 'build/platform/os/net-watch.js'), bastion], { env: nodeEnv(work), stdio: ['pipe', 'pipe', 'inherit'] })
    children.push(proc)
    const lines: Line[] = []
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Line))
    expect(await waitFor(() => lines.some((l) => l.ev === 'ready'), 15_000)).toBe(true)
    return { proc, lines }
  }

  beforeAll(async () => {
    work = tempDir('st-netwatch-')
    fs.chmodSync(work, 0o755)
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc')
    execFileSync(process.execPath, [tsc, '--outDir', path.join(work, 'build'), '--rootDir', path.join(ROOT, 'src'), '--target', 'ES2022',
      '--module', 'commonjs', '--moduleResolution', 'node', '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node',
      path.join(ROOT, 'src/platform/os/net-watch.ts')], { stdio: 'pipe' })
    fs.writeFileSync(path.join(work, 'child.js'), CHILD, { mode: 0o644 })
    execFileSync('chmod', ['-R', 'a+rX', work])
    cl = new Netns()
    gw1 = new Netns()
    gw2 = new Netns()
    // Veths are created inside the client namespace: nothing appears in the machine's own.
    cl.sh('ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'gw1', 'netns', gw1.name)
    cl.sh('ip', 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'gw2', 'netns', gw2.name)
    for (const [ns, dev, v4, v6] of [[gw1, 'gw1', '192.168.50.1/24', '2001:db8:50::1/64'], [gw2, 'gw2', '192.168.60.1/24', '2001:db8:60::1/64'],
      [cl, 'eth0', '192.168.50.2/24', '2001:db8:50::2/64'], [cl, 'eth1', '192.168.60.2/24', '2001:db8:60::2/64']] as const) {
      ns.sh('ip', 'addr', 'add', v4, 'dev', dev)
      ns.sh('ip', '-6', 'addr', 'add', v6, 'dev', dev, 'nodad')
      ns.sh('ip', 'link', 'set', dev, 'up')
    }
    cl.sh('ip', 'route', 'add', 'default', 'via', '192.168.50.1', 'dev', 'eth0')
    cl.sh('ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:50::1', 'dev', 'eth0')
    watchers.v4 = await startWatcher('203.0.113.7')
    watchers.v6 = await startWatcher('2001:db8:77::7')
  }, 120_000)

  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const ns of [cl, gw1, gw2]) ns?.destroy()
    if (work) fs.rmSync(work, { recursive: true, force: true })
    if (latencies.length) {
      console.log('net watch latencies (ms): step | watcher | command returned → changed | first notification → changed')
      for (const l of latencies) console.log(`  ${l.step} | ${l.who} | ${l.fromCommandMs.toFixed(1)} | ${l.firstLineToEventMs.toFixed(1)}`)
    }
  })

  /**
   * Runs the commands, then expects a 'changed' from exactly the watchers in `expect` (within
   * 5 s) and none from the others (for 1 s after the last one). Returns the changes seen.
   */
  async function step(name: string, cmds: Array<[Netns, ...string[]]>, expected: Array<'v4' | 'v6'>): Promise<Record<string, Line[]>> {
    const from = { v4: watchers.v4.lines.length, v6: watchers.v6.lines.length }
    for (const [ns, ...argv] of cmds) ns.sh(...argv)
    const done = now()
    const changes = (who: 'v4' | 'v6'): Line[] => watchers[who].lines.slice(from[who]).filter((l) => l.ev === 'changed')
    for (const who of expected) {
      expect(await waitFor(() => changes(who).length > 0, 5000), `${name}: ${who} saw no change`).toBe(true)
      const first = changes(who)[0]
      latencies.push({ step: name, who, fromCommandMs: first.t - done, firstLineToEventMs: first.t - first.first! })
    }
    await sleep(1000)
    for (const who of ['v4', 'v6'] as const) {
      if (!expected.includes(who)) expect(changes(who), `${name}: ${who} should not change`).toEqual([])
    }
    return { v4: changes('v4'), v6: changes('v6') }
  }

  it('starts as an unprivileged user and knows the path', () => {
    const ready = (who: 'v4' | 'v6') => watchers[who].lines.find((l) => l.ev === 'ready')!
    expect(ready('v4').path).toMatchObject({ dev: 'eth0', via: '192.168.50.1', src: '192.168.50.2', up: true })
    expect(ready('v6').path).toMatchObject({ dev: 'eth0', via: '2001:db8:50::1', src: '2001:db8:50::2', up: true })
    expect(watchers.v4.lines.filter((l) => l.ev === 'warning')).toEqual([])
  })

  it('ignores the tunnelled networks, our own policy table, docker churn and other routes', async () => {
    await step('unrelated', [
      [cl, 'ip', 'tuntap', 'add', 'dev', 'sttun0', 'mode', 'tun'],
      [cl, 'ip', 'link', 'set', 'sttun0', 'up'],
      [cl, 'ip', 'route', 'add', '10.77.0.0/16', 'dev', 'sttun0'],
      // The bastion inside a tunnelled network: the tun backend routes the network into its
      // device in its own table, with a throw route for the bastion (an exclude).
      [cl, 'ip', 'route', 'add', '203.0.0.0/8', 'dev', 'sttun0', 'table', TABLE],
      [cl, 'ip', 'route', 'add', 'throw', '203.0.113.7', 'table', TABLE],
      [cl, 'ip', 'rule', 'add', 'priority', '5354', 'lookup', TABLE],
      [cl, 'ip', 'link', 'add', 'docker0', 'type', 'bridge'],
      [cl, 'ip', 'addr', 'add', '172.17.0.1/16', 'dev', 'docker0'],
      [cl, 'ip', 'link', 'set', 'docker0', 'up'],
      [cl, 'ip', 'link', 'add', 'vethc0', 'master', 'docker0', 'type', 'veth', 'peer', 'name', 'vethc1'],
      [cl, 'ip', 'link', 'set', 'vethc0', 'up'],
      [cl, 'ip', 'link', 'del', 'vethc0'],
      [cl, 'ip', 'link', 'del', 'docker0'],
      [cl, 'ip', 'route', 'add', '10.99.0.0/16', 'via', '192.168.50.1'],
      [cl, 'ip', 'route', 'add', '10.98.0.0/16', 'via', '192.168.60.1'],
    ], [])
    expect(cl.sh('ip', '-o', 'route', 'get', '203.0.113.7')).toContain('dev eth0')
    expect(cl.sh('ip', '-o', 'route', 'get', '203.0.113.8')).toContain('dev sttun0')
  })

  it('carrier lost and back on the path interface: both watchers, at once', async () => {
    const lost = await step('carrier lost', [[gw1, 'ip', 'link', 'set', 'gw1', 'down']], ['v4', 'v6'])
    expect(lost.v4[0]).toMatchObject({ broken: true, after: { dev: 'eth0', up: false } })
    await step('carrier back', [[gw1, 'ip', 'link', 'set', 'gw1', 'up'], [gw1, 'ip', '-6', 'addr', 'add', '2001:db8:50::1/64', 'dev', 'gw1', 'nodad']], ['v4', 'v6'])
  })

  it('default route through another interface: only the family that changed', async () => {
    const v4 = await step('default v4 → eth1', [[cl, 'ip', 'route', 'replace', 'default', 'via', '192.168.60.1', 'dev', 'eth1']], ['v4'])
    expect(v4.v4[0]).toMatchObject({ broken: false, after: { dev: 'eth1', src: '192.168.60.2' } })
    const v6 = await step('default v6 → eth1', [[cl, 'ip', '-6', 'route', 'replace', 'default', 'via', '2001:db8:60::1', 'dev', 'eth1']], ['v6'])
    expect(v6.v6[0]).toMatchObject({ after: { dev: 'eth1', src: '2001:db8:60::2' } })
    await step('defaults back → eth0', [[cl, 'ip', 'route', 'replace', 'default', 'via', '192.168.50.1', 'dev', 'eth0'],
      [cl, 'ip', '-6', 'route', 'replace', 'default', 'via', '2001:db8:50::1', 'dev', 'eth0']], ['v4', 'v6'])
  })

  it('a route covering the bastion, added and removed', async () => {
    const add = await step('covering route add', [[cl, 'ip', 'route', 'add', '203.0.113.0/24', 'via', '192.168.60.1']], ['v4'])
    expect(add.v4[0].after).toMatchObject({ dev: 'eth1' })
    const del = await step('covering route del', [[cl, 'ip', 'route', 'del', '203.0.113.0/24']], ['v4'])
    expect(del.v4[0].after).toMatchObject({ dev: 'eth0' })
  })

  it('the source address replaced (DHCP gave another one)', async () => {
    const r = await step('source address replaced', [[cl, 'ip', 'addr', 'del', '192.168.50.2/24', 'dev', 'eth0'],
      [cl, 'ip', 'addr', 'add', '192.168.50.9/24', 'dev', 'eth0'], [cl, 'ip', 'route', 'add', 'default', 'via', '192.168.50.1']], ['v4'])
    expect(r.v4[0].broken).toBe(true)
    expect(await waitFor(() => watchers.v4.lines.at(-1)?.after?.src === '192.168.50.9', 3000)).toBe(true)
  })

  it('link down (routes gone) then up with a new default route', async () => {
    const down = await step('eth0 admin down', [[cl, 'ip', 'link', 'set', 'eth0', 'down']], ['v4', 'v6'])
    expect(down.v4[0]).toMatchObject({ broken: true, after: null })
    // Up: IPv4 gets its default route back; IPv6 lost its address with the admin down, so it
    // stays without a route (looked up, nothing to report) until both come back.
    const up = await step('eth0 up + default v4', [[cl, 'ip', 'link', 'set', 'eth0', 'up'], [cl, 'ip', 'route', 'add', 'default', 'via', '192.168.50.1']], ['v4'])
    expect(up.v4.at(-1)!.after).toMatchObject({ dev: 'eth0', up: true })
    const v6 = await step('address + default v6', [[cl, 'ip', '-6', 'addr', 'add', '2001:db8:50::2/64', 'dev', 'eth0', 'nodad'],
      [cl, 'ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:50::1']], ['v6'])
    expect(v6.v6.at(-1)!.after).toMatchObject({ dev: 'eth0', src: '2001:db8:50::2', up: true })
  })

  it('a killed monitor is restarted and changes are still seen', async () => {
    const pid = watchers.v4.lines.find((l) => l.ev === 'ready')!.monitorPid!
    process.kill(pid, 'SIGKILL')
    await sleep(800) // first restart after 250 ms; its gap triggers one lookup (no change)
    await step('after monitor restart', [[cl, 'ip', 'route', 'replace', 'default', 'via', '192.168.60.1', 'dev', 'eth1']], ['v4'])
  })

  it('a SIGKILLed watcher takes its monitor with it (pdeathsig)', async () => {
    const pids = execFileSync('ip', ['netns', 'pids', cl.name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
    const monitors = pids.filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('ip\0-o\0monitor'))
    expect(monitors.length).toBe(2)
    for (const w of Object.values(watchers)) w.proc.kill('SIGKILL')
    expect(await waitFor(() => monitors.every((p) => !fs.existsSync(`/proc/${p}`)), 3000)).toBe(true)
  })
})
