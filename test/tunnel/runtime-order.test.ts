/**
 * The order in which the runtime starts and stops its parts, with fakes for every factory
 * (the root e2e tests run the real ones): the helper before SSH when sudo may prompt (and
 * alongside it otherwise), the listener before the rules, the rules reverted before SSH closes,
 * and a fatal error reported as an event, never as a signal to our own process.
 */
import { EventEmitter } from 'node:events'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { parseListen } from '../../src/config/listen'
import { TunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import type { SshConnection, SshEngine } from '../../src/ssh/engine'
import type { Helper, RuntimeFactories } from '../../src/tunnel/factories'
import type { TunnelPlan } from '../../src/tunnel/plan'
import { TunnelRuntime } from '../../src/tunnel/runtime'
import type { TunSetupDeps } from '../../src/tunnel/tun-setup'
import { hostCfg } from '../ssh/helpers'

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms))

function plan(over: Partial<TunnelPlan> = {}): TunnelPlan {
  return {
    remotes: [{ name: 'bastion', request: { destination: 'bastion', identities: [], options: [] }, target: hostCfg({ port: 22, alias: 'bastion', hostName: '192.0.2.1' }), hops: [] }],
    defaultRemote: 'bastion',
    includes: [{ cidr: parseCidr('10.0.0.0/16') }],
    userExcludes: [],
    capture: true,
    listen: parseListen(undefined),
    socks: [],
    http: [],
    access: new AccessPolicy(),
    method: 'nft',
    sshEngine: { name: 'builtin', why: 'test' },
    connections: 1,
    connectionsMax: 1,
    gateway: false,
    localForwards: [],
    remoteForwards: [],
    ...over,
  }
}

/** Fakes that write what happens, in order, to `events`. */
function fakes(
  events: string[],
  o: { helperPrompts: boolean; onTun?: (d: TunSetupDeps) => void; sshFails?: TunnelError; helperMs?: number; swept?: Helper['startupCleanup'] },
): RuntimeFactories {
  const connection = (): SshConnection => {
    const c = new EventEmitter() as SshConnection & { state: string }
    Object.assign(c, {
      state: 'connecting',
      stats: { reconnects: 0, channelsOpen: 0, channelsTotal: 0 },
      start: async () => {
        events.push('ssh: start')
        await tick()
        if (o.sshFails) {
          events.push('ssh: failed')
          throw o.sshFails
        }
        c.state = 'up'
        events.push('ssh: up')
      },
      close: async () => void events.push('ssh: close'),
      waitUp: async () => {},
      dial: async () => new PassThrough(),
      exec: async () => ({ code: 0, stdout: '', stderr: '' }),
      listenRemote: () => {
        throw new Error('not used')
      },
      describe: () => ({ engine: 'builtin' as const }),
    })
    return c
  }
  const engine: SshEngine = { name: 'builtin', connection }
  const helper: Helper = {
    probe: async () => ({ ok: true }),
    apply: async (method) => {
      events.push(`rules: apply (${method})`)
      return { method, object: 'x', families: [4], steps: 1 }
    },
    revert: async () => {
      events.push('rules: revert')
      return { reverted: true }
    },
    learn: async () => ({ added: 0, refreshed: 0 }),
    close: async () => {
      events.push('helper: close')
      return { code: 0, signal: null, expected: true, stderr: '', reason: 'code 0', clean: true }
    },
    natlook: async () => {
      throw new Error('not used')
    },
    onExit: () => {},
    ...(o.swept !== undefined && { startupCleanup: o.swept }),
  }
  return {
    helper: async () => {
      events.push('helper: start')
      await tick(o.helperMs ?? 20)
      events.push('helper: ready')
      return helper
    },
    helperMayPrompt: () => o.helperPrompts,
    engine: () => engine,
    listener: () => ({
      port: 12345,
      start: async () => {
        events.push('listener: start')
        return 12345
      },
      stop: async () => void events.push('listener: stop'),
    }),
    tun: async (d) => {
      events.push('tun: device and engine')
      d.onStop('stop the TUN engine', async () => void events.push('tun: stop'))
      o.onTun?.(d)
      return { device: 'st0', engine: 'builtin', restarts: () => 0, stop: async () => {} }
    },
    dns: async () => {
      throw new Error('not used')
    },
    frontEnds: async () => {
      events.push('front-ends: start')
      return [{ kind: 'socks5', address: '127.0.0.1:1080', describe: () => 'socks5', stop: async () => void events.push('front-ends: stop') }]
    },
    transportExcludes: async () => [],
    localNetworks: () => [],
  }
}

afterEach(() => vi.restoreAllMocks())

describe('TunnelRuntime start and stop order', () => {
  it('sudo may prompt: the helper is ready before SSH starts; listener before rules; stop reverts before SSH closes', async () => {
    const events: string[] = []
    const rt = new TunnelRuntime(plan(), memoryLogger(), fakes(events, { helperPrompts: true }))
    await rt.start()
    expect(events).toEqual([
      'helper: start',
      'helper: ready',
      'ssh: start',
      'ssh: up',
      'front-ends: start',
      'listener: start',
      'rules: apply (nft)',
    ])
    events.length = 0
    await rt.stop()
    expect(events).toEqual(['rules: revert', 'listener: stop', 'front-ends: stop', 'ssh: close', 'helper: close'])
  })

  it('no prompt possible: the helper starts alongside SSH (start-up is the slower of the two)', async () => {
    const events: string[] = []
    const rt = new TunnelRuntime(plan(), memoryLogger(), fakes(events, { helperPrompts: false }))
    await rt.start()
    expect(events.indexOf('ssh: start')).toBeLessThan(events.indexOf('helper: ready'))
    expect(events.indexOf('listener: start')).toBeLessThan(events.indexOf('rules: apply (nft)'))
    await rt.stop()
  })

  it('no subnets: neither helper nor rules, only SSH and the front-ends', async () => {
    const events: string[] = []
    const rt = new TunnelRuntime(plan({ includes: [], capture: false }), memoryLogger(), fakes(events, { helperPrompts: true }))
    await rt.start()
    await rt.stop()
    expect(events).toEqual(['ssh: start', 'ssh: up', 'front-ends: start', 'front-ends: stop', 'ssh: close'])
  })

  it('method tun: the device and engine instead of listener and rules; a fatal error is an event, not a signal', async () => {
    const events: string[] = []
    const kill = vi.spyOn(process, 'kill')
    let fatal: ((e: TunnelError) => void) | undefined
    const rt = new TunnelRuntime(plan({ method: 'tun', tunEngine: 'builtin' }), memoryLogger(), fakes(events, { helperPrompts: true, onTun: (d) => (fatal = d.onFatal) }))
    await rt.start()
    expect(events).toContain('tun: device and engine')
    expect(events).not.toContain('listener: start')
    const seen: TunnelError[] = []
    rt.on('fatal', (e: TunnelError) => seen.push(e))
    fatal!(new TunnelError('FW_APPLY', 'tun: the engine gave up'))
    expect(seen.map((e) => e.message)).toEqual(['tun: the engine gave up'])
    expect(rt.fatal?.message).toBe('tun: the engine gave up')
    expect(kill).not.toHaveBeenCalled()
    events.length = 0
    await rt.stop()
    expect(events).toEqual(['tun: stop', 'front-ends: stop', 'ssh: close', 'helper: close'])
  })

  it('a failure half-way unwinds exactly what was started', async () => {
    const events: string[] = []
    const f = fakes(events, { helperPrompts: true })
    const rt = new TunnelRuntime(plan(), memoryLogger(), {
      ...f,
      listener: () => ({
        port: 0,
        start: async () => {
          throw new TunnelError('PORT_IN_USE', 'listen 127.0.0.1:1: port already in use')
        },
        stop: async () => void events.push('listener: stop'),
      }),
    })
    await expect(rt.start()).rejects.toMatchObject({ code: 'PORT_IN_USE' })
    events.length = 0
    await rt.stop()
    expect(events).toEqual(['front-ends: stop', 'ssh: close', 'helper: close'])
  })

  it('a refused SSH connection is reported at once, not after the helper is ready; the late helper is closed', async () => {
    const events: string[] = []
    const refused = new TunnelError('SSH_CONNECT_REFUSED', 'ssh: connect to 192.0.2.1:22: connection refused')
    const rt = new TunnelRuntime(plan(), memoryLogger(), fakes(events, { helperPrompts: false, sshFails: refused, helperMs: 300 }))
    const t0 = Date.now()
    await expect(rt.start()).rejects.toBe(refused)
    expect(Date.now() - t0).toBeLessThan(200)
    expect(events).not.toContain('helper: ready')
    await rt.stop()
    await tick(400)
    expect(events.slice(-2)).toEqual(['helper: ready', 'helper: close'])
  })

  it('says what the helper removed of a dead instance as it started', async () => {
    const events: string[] = []
    const log = memoryLogger()
    const swept = { removed: ['instance ab12 (nft)'], kept: 0, warnings: ['instance cd34: nft: busy'] }
    const rt = new TunnelRuntime(plan(), log, fakes(events, { helperPrompts: true, swept }))
    await rt.start()
    await rt.stop()
    expect(log.lines).toContain('[fw] removed what a dead instance left behind: instance ab12 (nft)')
    expect(log.lines).toContain('[fw] warning: cleanup of a dead instance: instance cd34: nft: busy')
  })
})
