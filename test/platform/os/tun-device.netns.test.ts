/**
 * Root-only: a real TUN device in a throwaway network namespace, opened by an UNPRIVILEGED
 * process (uid 65534) exactly as the main process does: the device is created for that uid
 * (as the helper does), and the clone device is a node of our own with mode 0666, since
 * /dev/net/tun may be 0600 on a test machine. Packets routed to the device are read one per
 * callback; packets written come out of the kernel to a socket in the namespace.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { canUseNetns, Netns, nodeEnv, ROOT, tempDir, waitFor } from '../netns-harness'
import { TUN_CHILD, udp4 } from '../tun-packets'

const enabled = canUseNetns()
const NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups']

describe.skipIf(!enabled)('TUN device opened by an unprivileged process (netns)', () => {
  let ns: Netns
  let work: string
  let build: string
  let clone: string
  const children: ChildProcess[] = []

  beforeAll(() => {
    work = tempDir('st-tun-dev-')
    fs.chmodSync(work, 0o755)
    build = path.join(work, 'build')
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc')
    execFileSync(process.execPath, [tsc, '--outDir', build, '--rootDir', path.join(ROOT, 'src'), '--target', 'ES2022',
      '--module', 'commonjs', '--moduleResolution', 'node', '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node',
      path.join(ROOT, 'src/platform/os/tun-device.ts')], { stdio: 'pipe' })
    execFileSync('chmod', ['-R', 'a+rX', work])
    fs.writeFileSync(path.join(work, 'child.js'), TUN_CHILD, { mode: 0o644 })
    clone = path.join(work, 'tun')
    execFileSync('mknod', [clone, 'c', '10', '200'])
    fs.chmodSync(clone, 0o666)
    ns = new Netns()
    ns.sh('ip', 'tuntap', 'add', 'dev', 'sttest', 'mode', 'tun', 'user', '65534')
    ns.sh('ip', 'tuntap', 'add', 'dev', 'stroot', 'mode', 'tun', 'user', '0')
    ns.sh('ip', 'addr', 'add', '169.254.77.1/30', 'dev', 'sttest')
    ns.sh('ip', '-6', 'addr', 'add', 'fd7a:5354::1/126', 'dev', 'sttest', 'nodad')
    ns.sh('ip', 'link', 'set', 'dev', 'sttest', 'mtu', '1400', 'up')
    ns.sh('ip', 'route', 'add', '10.77.0.0/16', 'dev', 'sttest')
    ns.sh('ip', '-6', 'route', 'add', 'fd77::/64', 'dev', 'sttest')
  }, 120_000)

  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    ns?.destroy()
    if (work) fs.rmSync(work, { recursive: true, force: true })
  })

  /** Starts the child as nobody; resolves with a line reader once it printed its first line. */
  async function child(dev: string): Promise<{ proc: ChildProcess; lines: Array<Record<string, unknown>>; first: Record<string, unknown> }> {
    const proc = spawn('ip', ['netns', 'exec', ns.name, ...NOBODY, process.execPath, path.join(work, 'child.js'),
      path.join(build, 'platform/os/tun-device.js'), dev, clone], { env: nodeEnv(work), stdio: ['pipe', 'pipe', 'inherit'] })
    children.push(proc)
    const lines: Array<Record<string, unknown>> = []
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>))
    expect(await waitFor(() => lines.length > 0, 15_000)).toBe(true)
    return { proc, lines, first: lines.shift()! }
  }

  const packets = (lines: Array<Record<string, unknown>>): Buffer[] =>
    lines.filter((l) => typeof l.packet === 'string').map((l) => Buffer.from(l.packet as string, 'hex'))

  it('reads one IPv4 and one IPv6 packet per callback, and writes a UDP datagram the kernel delivers', async () => {
    const { proc, lines, first } = await child('sttest')
    expect(first).toEqual({ ready: 'sttest' })
    // Kernel → device: UDP to routed addresses, v4 and v6.
    ns.sh('node', '-e', `const d=require('dgram');const s=d.createSocket('udp4');s.send('hello-v4',5555,'10.77.0.9',()=>s.close())`)
    ns.sh('node', '-e', `const d=require('dgram');const s=d.createSocket('udp6');s.send('hello-v6',5556,'fd77::9',()=>s.close())`)
    expect(await waitFor(() => packets(lines).some((p) => p.toString().endsWith('hello-v6')), 10_000)).toBe(true)
    const v4 = packets(lines).find((p) => p[0] >> 4 === 4 && p[9] === 17)!
    expect([...v4.subarray(16, 20)]).toEqual([10, 77, 0, 9])
    expect(v4.readUInt16BE(22)).toBe(5555)
    expect(v4.subarray(28).toString()).toBe('hello-v4') // nothing before the IP header (IFF_NO_PI)
    expect(v4.readUInt16BE(2)).toBe(v4.length) // exactly one packet
    const v6 = packets(lines).find((p) => p[0] >> 4 === 6 && p[6] === 17)!
    expect(v6.subarray(48).toString()).toBe('hello-v6')

    // Device → kernel: a datagram "from" 10.77.0.9 to a socket bound in the namespace.
    const recv = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
      `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>{console.log(r.address+':'+r.port+' '+m);process.exit(0)});s.bind(6000,'169.254.77.1',()=>console.log('bound'))`])
    children.push(recv)
    let out = ''
    recv.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    expect(await waitFor(() => out.includes('bound'), 10_000)).toBe(true)
    proc.stdin!.write(udp4([10, 77, 0, 9], [169, 254, 77, 1], 5555, 6000, Buffer.from('from-the-device')).toString('hex') + '\n')
    expect(await waitFor(() => out.includes('from-the-device'), 10_000), out).toBe(true)
    expect(out).toContain('10.77.0.9:5555 from-the-device')

    proc.stdin!.write('stats\n')
    expect(await waitFor(() => lines.some((l) => l.stats), 5000)).toBe(true)
    expect(lines.find((l) => l.stats)).toMatchObject({ mtu: 1400, stats: { packetsOut: 1, dropped: 0 } })
    proc.stdin!.end()
    expect(await waitFor(() => proc.exitCode !== null, 5000)).toBe(true)
    expect(proc.exitCode).toBe(0)
  }, 60_000)

  it('a device owned by another user cannot be opened (EPERM, with a hint)', async () => {
    const { first } = await child('stroot')
    expect(first).toMatchObject({ error: 'TUNSETIFF stroot: EPERM', hint: expect.stringMatching(/belongs to another user/) })
  }, 30_000)
})
