import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { TunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'
import type { PacketDevice } from '../../src/platform/os/tun-device'
import type { CaptureSpec, Executor } from '../../src/platform/firewall/types'
import { type DarwinTunSystem, startDarwinTun } from '../../src/tunnel/tun-setup-darwin'
import { startTun, type TunSetupDeps } from '../../src/tunnel/tun-setup'

function fakeSystem(uid: number, routeGet: Record<string, string> = {}) {
  const ran: string[][] = []
  let closed = false
  const exec: Executor = {
    async run(argv) {
      ran.push([...argv])
      if (argv[0] === 'route' && argv[2] === 'get') {
        const out = routeGet[argv[argv.length - 1]!]
        return out ? { code: 0, stdout: out, stderr: '' } : { code: 1, stdout: '', stderr: 'route: writing to routing socket: not in table' }
      }
      return { code: 0, stdout: '', stderr: '' }
    },
  }
  const dev: PacketDevice = { name: 'utun7', mtu: 65532, onPacket() {}, write() {}, close: async () => void (closed = true) }
  const system: DarwinTunSystem = { uid, exec, open: () => dev }
  return { system, ran, dev, isClosed: () => closed }
}

const spec = (include: string[], exclude: string[]): CaptureSpec => ({
  instanceId: 'ab12cd34',
  listenPort: 0,
  include: include.map(parseCidr),
  exclude: exclude.map(parseCidr),
  tunOwner: 0,
})

describe('--method tun on macOS (utun, fakes: nothing here has run on a Mac)', () => {
  it('needs root: the utun belongs to the process that creates it', async () => {
    const f = fakeSystem(501)
    const err = await startDarwinTun(spec(['10.0.0.0/8'], []), { log: memoryLogger(), onStop: () => {}, system: f.system }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TunnelError)
    expect((err as TunnelError).code).toBe('NEED_ROOT')
    expect(f.ran).toEqual([])
  })

  it('asks the next hop of an exclude inside a tunnelled network before routing, then routes; stop undoes both', async () => {
    const f = fakeSystem(0, { '10.1.2.3': '   route to: 10.1.2.3\ngateway: 192.168.1.1\n  interface: en0\n' })
    const stops: { what: string; run: () => Promise<unknown> }[] = []
    const dev = await startDarwinTun(spec(['10.0.0.0/8'], ['10.1.2.3/32', '192.168.0.0/16']), {
      log: memoryLogger(),
      onStop: (what, run) => stops.unshift({ what, run }),
      system: f.system,
    })
    expect(dev.name).toBe('utun7')
    expect(f.ran).toEqual([
      ['route', '-n', 'get', '-inet', '10.1.2.3'],
      ['ifconfig', 'utun7', 'inet', '169.254.77.1', '169.254.77.2', 'netmask', '255.255.255.252', 'mtu', '65532', 'up'],
      ['route', '-q', '-n', 'add', '-inet', '10.1.2.3/32', '192.168.1.1'],
      ['route', '-q', '-n', 'add', '-inet', '10.0.0.0/8', '-interface', 'utun7'],
    ])
    f.ran.length = 0
    for (const s of stops) await s.run()
    expect(f.ran).toEqual([
      ['route', '-q', '-n', 'delete', '-inet', '10.0.0.0/8', '-interface', 'utun7'],
      ['route', '-q', '-n', 'delete', '-inet', '10.1.2.3/32', '192.168.1.1'],
    ])
    expect(f.isClosed()).toBe(true)
  })

  it('refuses to start when an exclude inside a tunnelled network has no known next hop', async () => {
    const f = fakeSystem(0)
    const err = await startDarwinTun(spec(['10.0.0.0/8'], ['10.1.2.3/32']), { log: memoryLogger(), onStop: () => {}, system: f.system }).catch((e: unknown) => e)
    expect((err as TunnelError).code).toBe('FW_UNSUPPORTED')
    expect(f.ran.some((a) => a[3] === 'add')).toBe(false)
  })

  it('external engines are refused on macOS, before anything is set up', async () => {
    let applied = false
    const deps = {
      instanceId: 'ab12cd34',
      helper: { apply: async () => void (applied = true) },
      engine: { kind: 'tun2socks', path: '/usr/local/bin/tun2socks' },
      include: [parseCidr('10.0.0.0/8')],
      exclude: [],
      localHosts: [],
      routeEntries: [],
      log: memoryLogger(),
      onStop: () => {},
      platform: 'darwin',
    } as unknown as TunSetupDeps
    const err = await startTun(deps).catch((e: unknown) => e)
    expect((err as TunnelError).code).toBe('USAGE')
    expect(applied).toBe(false)
  })
})
