/**
 * Root-only: what the owner of a tun device can make the kernel accept. The real helper (with and
 * without the tun grant) creates the device for uid 65534 in a throwaway namespace; an
 * unprivileged process opens it and writes packets: a forged IPv4 source must be dropped, a
 * source inside the tunnelled network delivered, and a Router Advertisement must not install a
 * default route through the device.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { memoryLogger } from '../../../src/observe/logger'
import { startHelper, type HelperClient } from '../../../src/platform/helper/helper-client'
import type { CaptureSpec } from '../../../src/platform/firewall/types'
import { canUseNetns, Netns, nodeEnv, ROOT, tempDir, waitFor } from '../netns-harness'
import { routerAdvertisement, TUN_CHILD, udp4 } from '../tun-packets'

const enabled = canUseNetns()
const NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups']
/** cgroup v2 as a host mounts it (exec --only): where nft finds it, and the hybrid layout where only iptables does. */
const CGROUP_MOUNT = {
  unified: 'mount -t cgroup2 none /sys/fs/cgroup',
  hybrid: 'mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified',
}

describe.skipIf(!enabled)('tun device: source validation and router messages (netns, real helper)', () => {
  let ns: Netns
  let work: string
  let build: string
  let clone: string
  const procs: ChildProcess[] = []
  const clients: HelperClient[] = []

  beforeAll(() => {
    work = tempDir('st-tun-src-')
    fs.chmodSync(work, 0o755)
    build = path.join(work, 'build')
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc')
    execFileSync(process.execPath, [tsc, '--outDir', build, '--rootDir', path.join(ROOT, 'src'), '--target', 'ES2022',
      '--module', 'commonjs', '--moduleResolution', 'node', '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node',
      path.join(ROOT, 'src/platform/helper/helper-main.ts'), path.join(ROOT, 'src/platform/os/tun-device.ts')], { stdio: 'pipe' })
    execFileSync('chmod', ['-R', 'a+rX', work])
    fs.writeFileSync(path.join(work, 'child.js'), TUN_CHILD, { mode: 0o644 })
    clone = path.join(work, 'tun')
    execFileSync('mknod', [clone, 'c', '10', '200'])
    fs.chmodSync(clone, 0o666)
    ns = new Netns()
    // A default route elsewhere: forged sources are then routable (a loose check would pass them),
    // and whatever `all` is on this host, the namespace's own is 0: only the device's setting counts.
    ns.sh('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1')
    ns.sh('ip', 'link', 'set', 'd1', 'up')
    ns.sh('ip', 'link', 'set', 'd0', 'up')
    ns.sh('ip', 'addr', 'add', '10.98.0.1/24', 'dev', 'd0')
    ns.sh('ip', 'route', 'add', 'default', 'via', '10.98.0.2')
    ns.sh('sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=0')
  }, 120_000)

  afterAll(async () => {
    try {
      for (const c of clients) await c.close().catch(() => {})
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    } finally {
      ns?.destroy()
      if (work) fs.rmSync(work, { recursive: true, force: true })
    }
  })

  async function helper(grant: boolean, mountCgroup?: string): Promise<HelperClient> {
    // exec --only: `ip netns exec` shows a /sys without cgroups; mount cgroup v2 as a host has it.
    const wrap = mountCgroup === undefined ? [] : ['sh', '-c', `${mountCgroup} && exec "$@"`, 'sh']
    const args = ['netns', 'exec', ns.name, ...wrap, process.execPath, path.join(build, 'platform/helper/helper-main.js'), ...(grant ? ['--allow-tun'] : [])]
    const c = await startHelper({ log: memoryLogger(), env: nodeEnv(path.join(work, 'state')), launch: { command: 'ip', args, viaSudo: false, interactive: false } })
    clients.push(c)
    return c
  }

  const spec = (id: string, include: string[]): CaptureSpec => ({ instanceId: id, listenPort: 0, include: include.map(parseCidr), exclude: [], tunOwner: 65534 })

  /**
   * A UDP socket that sends one datagram to 10.99.0.9:`dport` (through `wrap`, e.g. into a
   * cgroup) and collects what it receives ("source payload").
   */
  async function udpSender(dport: number, wrap: string[]): Promise<{ port: number; got: string[] }> {
    const p = spawn('ip', ['netns', 'exec', ns.name, ...wrap, process.execPath, '-e',
      `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>console.log(r.address+' '+m));s.bind(0,()=>{console.log('port '+s.address().port);s.send('q',${dport},'10.99.0.9')})`])
    procs.push(p)
    const lines: string[] = []
    readline.createInterface({ input: p.stdout! }).on('line', (l) => lines.push(l))
    expect(await waitFor(() => lines.length > 0, 10_000)).toBe(true)
    const port = Number(/^port (\d+)$/.exec(lines[0]!)?.[1])
    return { port, get got() { return lines.slice(1) } }
  }

  /** Opens the device as nobody; write(hex) sends a packet into the kernel; onPacket gets what it reads (hex). */
  async function open(dev: string, onPacket?: (hex: string) => void): Promise<{ write: (p: Buffer) => void }> {
    const proc = spawn('ip', ['netns', 'exec', ns.name, ...NOBODY, process.execPath, path.join(work, 'child.js'),
      path.join(build, 'platform/os/tun-device.js'), dev, clone], { env: nodeEnv(work), stdio: ['pipe', 'pipe', 'inherit'] })
    procs.push(proc)
    const lines: string[] = []
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      const packet = (JSON.parse(l) as { packet?: string }).packet
      if (packet === undefined) lines.push(l)
      else onPacket?.(packet)
    })
    expect(await waitFor(() => lines.length > 0, 15_000)).toBe(true)
    expect(JSON.parse(lines[0])).toEqual({ ready: dev })
    return { write: (p) => proc.stdin!.write(p.toString('hex') + '\n') }
  }

  /** A UDP socket on 169.254.77.1:port in the namespace; the datagrams it got, "source payload". */
  async function receiver(port: number): Promise<string[]> {
    const p = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
      `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>console.log(r.address+' '+m));s.bind(${port},'169.254.77.1',()=>console.log('bound'))`])
    procs.push(p)
    const got: string[] = []
    readline.createInterface({ input: p.stdout! }).on('line', (l) => got.push(l))
    expect(await waitFor(() => got.includes('bound'), 10_000)).toBe(true)
    return got
  }

  const defaultRoutes = (): string => ns.sh('ip', '-6', 'route', 'show', 'default')

  it('without the grant the helper refuses tun and creates nothing', async () => {
    const h = await helper(false)
    await expect(h.apply('tun', spec('nogrant', ['10.99.0.0/24']))).rejects.toMatchObject({ code: 'HELPER', message: expect.stringMatching(/not granted/) })
    expect(ns.sh('ip', '-o', 'link', 'show')).not.toMatch(/stnogrant/)
    await h.close()
  }, 60_000)

  it('IPv4 only: strict rp_filter drops a forged source, passes the tunnelled one; no IPv6 on the device, so an RA does nothing', async () => {
    const h = await helper(true)
    await h.apply('tun', spec('src4', ['10.99.0.0/24']))
    expect(ns.sh('sysctl', '-n', 'net.ipv4.conf.stsrc4.rp_filter').trim()).toBe('1')
    const dev = await open('stsrc4')
    const got = await receiver(6000)
    // The forged datagram first, then one from the tunnelled network: once the second is
    // delivered, the first has been through the same queue.
    dev.write(udp4([192, 0, 2, 50], [169, 254, 77, 1], 5555, 6000, Buffer.from('forged')))
    dev.write(udp4([10, 99, 0, 9], [169, 254, 77, 1], 5555, 6000, Buffer.from('tunnelled')))
    expect(await waitFor(() => got.some((l) => l.endsWith('tunnelled')), 10_000), got.join('\n')).toBe(true)
    expect(got).toEqual(['bound', '10.99.0.9 tunnelled'])

    dev.write(routerAdvertisement(Buffer.from('20010db800770000', 'hex')))
    expect(await waitFor(() => defaultRoutes().includes('stsrc4'), 1500), defaultRoutes()).toBe(false)
    expect(ns.sh('ip', '-6', 'addr', 'show', 'dev', 'stsrc4')).toBe('')
    await h.revert()
    await h.close()
  }, 60_000)

  it('--owner-only, owner not root: a reply to the device address passes the strict check (its lookup carries uid 0, not the owner\'s); a forged source still does not', async () => {
    const h = await helper(true)
    await h.apply('tun', { ...spec('own4', ['10.99.0.0/24']), ownerUid: 65534 })
    const dev = await open('stown4')
    const got = await receiver(6001)
    dev.write(udp4([192, 0, 2, 50], [169, 254, 77, 1], 5555, 6001, Buffer.from('forged')))
    dev.write(udp4([10, 99, 0, 9], [169, 254, 77, 1], 5555, 6001, Buffer.from('reply')))
    expect(await waitFor(() => got.some((l) => l.endsWith('reply')), 10_000), got.join('\n')).toBe(true)
    expect(got).toEqual(['bound', '10.99.0.9 reply'])
    await h.revert()
    expect(ns.sh('ip', 'rule', 'show')).not.toMatch(/^5354:/m)
    await h.close()
  }, 60_000)

  // exec --only: only the cgroup's packets are routed into the device (by their mark); the
  // source is main's (d0's 10.98.0.1), and the owner's reply to it must pass strict rp_filter
  // (the restored mark), while a datagram it forges to another port (no connection) must not.
  for (const [layout, match] of [['hybrid', 'iptables'], ['unified', 'nft']] as const) {
    it(`exec --only (${match}): the cgroup's datagram goes into the device, another process's does not; the reply passes the strict check, a forged one does not`, async () => {
      const id = `only${match.slice(0, 3)}`
      const h = await helper(true, CGROUP_MOUNT[layout])
      await h.apply('tun', { ...spec(id, ['10.99.0.0/24']), cgroup: `subnet-tunnel-${id}`, cgroupMatch: match })
      const read: string[] = []
      const dev = await open(`st${id}`, (hex) => read.push(hex))
      const udpTo = (p: string) => p.startsWith('45') && p.slice(18, 20) === '11' && p.slice(32, 40) === '0a630009'
      // Another process first: not marked, so main routes it (out of d0), never into the device.
      const outside = await udpSender(7001, [])
      // The command: a process root put into the cgroup.
      const inside = await udpSender(7000, ['sh', '-c', `mount -t cgroup2 none /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/subnet-tunnel-${id}/cgroup.procs && exec "$@"`, 'sh'])
      expect(await waitFor(() => read.some(udpTo), 10_000), read.join('\n')).toBe(true)
      const sent = read.filter(udpTo)
      expect(sent).toHaveLength(1)
      const src = Buffer.from(sent[0]!.slice(24, 32), 'hex')
      expect([...src]).toEqual([10, 98, 0, 1])
      const sport = Buffer.from(sent[0]!, 'hex').readUInt16BE(20)
      expect(sport).toBe(inside.port)
      expect(outside.port).not.toBe(sport)
      dev.write(udp4([10, 99, 0, 9], [...src], 7001, sport, Buffer.from('forged')))
      dev.write(udp4([10, 99, 0, 9], [...src], 7000, sport, Buffer.from('answer')))
      expect(await waitFor(() => inside.got.length > 0, 10_000)).toBe(true)
      expect(inside.got).toEqual(['10.99.0.9 answer'])
      await h.revert()
      expect(ns.sh('ip', 'rule', 'show')).not.toMatch(/^5354:/m)
      expect(ns.sh('iptables', '-t', 'mangle', '-S') + ns.sh('nft', 'list', 'tables')).not.toMatch(/subnet-tunnel-/)
      await h.close()
    }, 60_000)
  }

  it('with an IPv6 network: a Router Advertisement written into the device installs no route and no address', async () => {
    const h = await helper(true)
    await h.apply('tun', spec('src6', ['10.99.0.0/24', 'fd99::/64']))
    const dev = await open('stsrc6')
    dev.write(routerAdvertisement(Buffer.from('20010db800780000', 'hex')))
    expect(await waitFor(() => defaultRoutes().includes('stsrc6'), 1500), defaultRoutes()).toBe(false)
    expect(ns.sh('ip', '-6', 'route', 'show')).not.toMatch(/2001:db8:78/)
    expect(ns.sh('ip', '-6', 'addr', 'show', 'dev', 'stsrc6')).not.toMatch(/2001:db8:78/)
    await h.revert()
    await h.close()
  }, 60_000)
})
