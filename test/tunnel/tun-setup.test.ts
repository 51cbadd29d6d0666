import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseArgs, type TunnelArgs } from '../../src/cli/args'
import { planTunEngine } from '../../src/tunnel/plan'
import { splitTunDnsServers } from '../../src/tunnel/tun-setup'
import { parseCidr } from '../../src/config/cidr'
import { formatStatus } from '../../src/status/status-format'
import { memoryLogger } from '../../src/observe/logger'
import type { DnsRuntime } from '../../src/tunnel/dns-setup'
import type { StatusSnapshot } from '../../src/status/status-types'

const quiet = { stdout: () => {}, stderr: () => {} }
const tunnelArgs = (...a: string[]): TunnelArgs => {
  const r = parseArgs(['-r', 'b', '10.0.0.0/8', ...a], '1.0.0', quiet)
  if (r.kind !== 'tunnel') throw new Error('not a tunnel command')
  return r.args
}
const dnsPlan = { capture: ['10.9.9.9'], localUpstreams: ['10.9.9.9'], toNs: [], domains: [], usesResolved: false, cache: true }

describe('--method tun on the command line', () => {
  it('--method tun and --tun-engine parse; the engine defaults to builtin', () => {
    expect(tunnelArgs('--method', 'tun')).toMatchObject({ method: 'tun' })
    expect(tunnelArgs('--method', 'tun').tunEngine).toBeUndefined()
    expect(tunnelArgs('--method', 'tun', '--tun-engine', 'tun2socks').tunEngine).toBe('tun2socks')
    expect(planTunEngine(tunnelArgs('--method', 'tun'), undefined)).toBe('builtin')
    expect(planTunEngine(tunnelArgs(), undefined)).toBeUndefined()
  })

  it('refuses --tun-engine without --method tun, --gateway with it, and unknown engines', () => {
    expect(() => planTunEngine(tunnelArgs('--tun-engine', 'builtin'), undefined)).toThrow(/--tun-engine needs --method tun/)
    expect(() => planTunEngine(tunnelArgs('--method', 'tun', '--gateway'), undefined)).toThrow(/--gateway is not needed/)
    expect(() => planTunEngine(tunnelArgs('--method', 'tun', '--tun-engine', 'wireguard'), undefined)).toThrow(/unknown engine/)
  })

  it('an external engine is located now, and refuses --dns (no UDP through SOCKS5)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-tunplan-'))
    try {
      const p = path.join(dir, 'tun2socks')
      fs.writeFileSync(p, '#!/bin/sh\n', { mode: 0o755 })
      expect(planTunEngine(tunnelArgs('--method', 'tun', '--tun-engine', p), undefined)).toEqual({ kind: 'tun2socks', path: p })
      expect(() => planTunEngine(tunnelArgs('--method', 'tun', '--tun-engine', p), dnsPlan)).toThrow(/needs the built-in engine/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('DNS servers with tun', () => {
  it('loopback and this machine\'s own addresses cannot be routed into the device; the rest are', () => {
    const local = [parseCidr('192.168.1.20/32'), parseCidr('fd00::20/128'), parseCidr('10.250.0.1/32'), parseCidr('192.168.1.0/24')]
    expect(splitTunDnsServers(['127.0.0.53', '192.168.1.1', '::1', 'fd00::20', '10.250.0.1', '8.8.8.8', '192.168.1.20'], local)).toEqual({
      routed: ['192.168.1.1', '8.8.8.8'],
      local: ['127.0.0.53', '::1', 'fd00::20', '10.250.0.1', '192.168.1.20'],
    })
  })
})

describe('status with tun', () => {
  it('shows the device, the engine, its version and restarts on the capture row', () => {
    const s: StatusSnapshot = {
      pid: 1, version: '0.1.0', instanceId: 'ab12', startedAt: '2024-05-01T10:00:00.000Z', uptimeS: 5, remotes: [],
      subnets: ['10.0.0.0/8'], excludes: [], method: 'tun',
      tun: { device: 'stab12', engine: 'tun2socks', engineVersion: '2.5.2', restarts: 1 },
      proxies: [], forwards: [], totals: { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 }, connections: [],
    }
    expect(formatStatus([s])).toContain('capture    tun · device stab12 · engine tun2socks 2.5.2 (1 restart) · every local user\n')
    expect(formatStatus([{ ...s, tun: { device: 'stab12', engine: 'builtin', restarts: 0 } }])).toContain('capture    tun · device stab12 · engine builtin · every local user\n')
  })
})

describe('TCP port 53 of captured nameservers (built-in engine)', () => {
  it('goes to the DNS interceptor; other ports of a non-tunnelled server are refused; the rest is dialled', async () => {
    const net = await import('node:net')
    const { RouteTable } = await import('../../src/router/route-table')
    const { dnsTcpDialer } = await import('../../src/tunnel/tun-setup')
    const seen: string[] = []
    const server = net.createServer((s) => s.end('dns-over-tcp'))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const port = (server.address() as { port: number }).port
    const inner = { dial: async (dst: { host: string; port: number }) => { seen.push(`${dst.host}:${dst.port}`); throw new Error('inner') } }
    const tunnelled = new RouteTable([{ cidr: parseCidr('10.0.0.0/8'), action: 'tunnel' }])
    const d = dnsTcpDialer(inner, new Set(['192.168.1.1', '10.0.0.2']), port, tunnelled)
    const meta = { id: 1, frontEnd: 'transparent' as const, srcAddress: '169.254.77.1', srcPort: 5000 }
    try {
      for (const host of ['192.168.1.1', '10.0.0.2']) {
        const s = await d.dial({ host, port: 53 }, meta)
        const text = await new Promise<string>((r) => { let b = ''; s.on('data', (c: Buffer) => (b += c.toString())); s.on('end', () => r(b)) })
        expect(text).toBe('dns-over-tcp')
      }
      await expect(d.dial({ host: '192.168.1.1', port: 80 }, meta)).rejects.toMatchObject({ reason: 'not-routed' })
      await expect(d.dial({ host: '10.0.0.2', port: 80 }, meta)).rejects.toThrow('inner')
      await expect(d.dial({ host: '10.0.0.5', port: 53 }, meta)).rejects.toThrow('inner')
      expect(seen).toEqual(['10.0.0.2:80', '10.0.0.5:53'])
    } finally {
      server.close()
    }
  })
})

describe('split DNS and --route-by-name with tun', () => {
  const capture = { servers: ['10.9.9.9', '127.0.0.53'], port: 4053, exemptSourcePorts: [40053] }
  const dns = { capture } as unknown as DnsRuntime
  const base = { instanceId: 'ab12cd34', include: [], exclude: [], localHosts: [], log: memoryLogger() }

  it('a captured server that is also the original resolver is routed (our queries to it are exempt), on Linux', async () => {
    const { dnsServersToRoute } = await import('../../src/tunnel/tun-setup')
    expect(dnsServersToRoute({ ...base, dns, localUpstreams: ['10.9.9.9'], platform: 'linux' })).toEqual(['10.9.9.9'])
    // macOS has no rules to exempt our forwarder with: still refused there
    expect(() => dnsServersToRoute({ ...base, dns, localUpstreams: ['10.9.9.9'], platform: 'darwin' })).toThrow(/routed back into the tunnel/)
  })

  it("the spec carries the forwarder's exempt ports, and with --route-by-name the learnt families", async () => {
    const { tunCaptureSpec } = await import('../../src/tunnel/tun-setup')
    const learnt = { routes: { lookup: () => undefined }, families: [4, 6] as Array<4 | 6> }
    expect(tunCaptureSpec({ ...base, dns, learnt }, ['10.9.9.9'])).toMatchObject({
      listenPort: 0,
      include: [],
      dns: { servers: ['10.9.9.9'], port: 4053, exemptSourcePorts: [40053] },
      learn: { families: [4, 6] },
    })
    expect(tunCaptureSpec(base, [])).not.toHaveProperty('learn')
    expect(tunCaptureSpec(base, [])).not.toHaveProperty('dns')
  })

  it('the engine carries a learnt address while it is learnt, and not before or after', async () => {
    const { engineRoutes } = await import('../../src/tunnel/tun-setup')
    const { LearntRoutes } = await import('../../src/router/learnt-routes')
    let now = 1_000_000
    const learnt = new LearntRoutes({ screen: () => undefined, inUse: () => false, graceS: 1, log: memoryLogger(), now: () => now })
    const { routes, tunnelled } = engineRoutes({ routeEntries: [{ cidr: parseCidr('10.0.0.0/16'), action: 'tunnel' }], learnt: { routes: learnt, families: [4] } }, ['10.9.9.9'])
    expect(routes.decide('10.7.0.5')).toBe('direct')
    learnt.attach(async () => {})
    await learnt.learn('db.corp.internal', [{ address: '10.7.0.5', ttl: 10 }])
    learnt.stop()
    expect(routes.decide('10.7.0.5')).toBe('tunnel')
    expect(tunnelled.decide('10.7.0.5')).toBe('tunnel')
    expect(routes.decide('10.9.9.9')).toBe('tunnel')
    expect(routes.decide('10.0.1.1')).toBe('tunnel')
    now += 11_001
    await learnt.sweep()
    expect(routes.decide('10.7.0.5')).toBe('direct')
  })

  it("the engine drops a query from our own forwarder's port that came back into the device; others are answered", async () => {
    const { engineDnsAnswer } = await import('../../src/tunnel/tun-setup')
    const asked: string[] = []
    const service = { handle: async (_q: Buffer, via: string, c: { address: string; port: number }) => (asked.push(`${via} ${c.address}:${c.port}`), Buffer.from('answer')) }
    const e = engineDnsAnswer(service as unknown as Pick<DnsRuntime['service'], 'handle'>, [40053], memoryLogger())
    expect(await e.answer(Buffer.from('q'), { host: '169.254.77.1', port: 40053, family: 4 })).toBeUndefined()
    expect(await e.answer(Buffer.from('q'), { host: 'fd7a:5354::1', port: 40053, family: 6 })).toBeUndefined()
    expect(await e.answer(Buffer.from('q'), { host: '169.254.77.1', port: 40054, family: 4 })).toEqual(Buffer.from('answer'))
    expect(await e.answer(Buffer.from('q'), { host: '10.1.2.3', port: 40053, family: 4 })).toEqual(Buffer.from('answer'))
    expect(asked).toEqual(['udp 169.254.77.1:40054', 'udp 10.1.2.3:40053'])
  })
})
