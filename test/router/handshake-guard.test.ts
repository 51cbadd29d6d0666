import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import { DescriptorReserve } from '../../src/router/descriptor-reserve'
import { HANDSHAKE_LIMITS, HandshakeGuard, sourceKey } from '../../src/router/handshake-guard'
import { connect, listen } from './proxy-test-helpers'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Accepted (server-side) sockets on real loopback connections, presented as coming from `address`. */
async function acceptor(): Promise<(address?: string) => Promise<net.Socket>> {
  const waiting: ((s: net.Socket) => void)[] = []
  const srv = net.createServer((s) => waiting.shift()!(s))
  const port = await listen(srv)
  const clients: net.Socket[] = []
  cleanups.push(() => {
    for (const c of clients) c.destroy()
    return new Promise((r) => srv.close(r))
  })
  return async (address) => {
    const accepted = new Promise<net.Socket>((r) => waiting.push(r))
    clients.push(await connect(port))
    const s = await accepted
    s.on('error', () => {})
    if (address) Object.defineProperty(s, 'remoteAddress', { value: address })
    return s
  }
}

const closed = (s: net.Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())))

describe('HandshakeGuard', () => {
  it('caps connections per source: refuses the excess, admits again once one finishes or closes', async () => {
    const accept = await acceptor()
    const log = memoryLogger()
    const g = new HandshakeGuard({ log, perSource: 2, total: 100 })
    const a1 = g.admit(await accept('192.0.2.1'), 'socks5')
    const s2 = await accept('192.0.2.1')
    expect(g.admit(s2, 'socks5')).toBeDefined()
    expect(g.admit(await accept('192.0.2.1'), 'socks5')).toBeUndefined()
    // Another address is not affected.
    expect(g.admit(await accept('192.0.2.2'), 'socks5')).toBeDefined()
    expect(g.openFrom('192.0.2.1')).toBe(2)
    a1!.done()
    a1!.done() // idempotent
    expect(g.admit(await accept('192.0.2.1'), 'socks5')).toBeDefined()
    expect(g.admit(await accept('192.0.2.1'), 'socks5')).toBeUndefined()
    s2.destroy()
    await closed(s2)
    expect(g.admit(await accept('192.0.2.1'), 'socks5')).toBeDefined()
    expect(g.open).toBe(3)
    expect(log.lines.join('\n')).toMatch(/warning: socks5: refused 192\.0\.2\.1: 2 connections from 192\.0\.2\.1 are already in their handshake \(cap 2\)/)
  })

  it('caps connections in total, across the listeners sharing the guard', async () => {
    const accept = await acceptor()
    const g = new HandshakeGuard({ log: memoryLogger(), perSource: 10, total: 3 })
    const first = g.admit(await accept('192.0.2.1'), 'socks5')
    g.admit(await accept('192.0.2.2'), 'http-proxy')
    g.admit(await accept('192.0.2.3'), 'socks5')
    expect(g.admit(await accept('192.0.2.4'), 'http-proxy')).toBeUndefined()
    first!.done()
    expect(g.admit(await accept('192.0.2.4'), 'http-proxy')).toBeDefined()
    expect(g.open).toBe(3)
  })

  it('counts IPv6 clients by /64 and IPv4-mapped ones as IPv4', () => {
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(sourceKey('2001:db8:1:2:bbbb::7%eth0')).toBe('2001:db8:1:2::/64')
    expect(sourceKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64')
    expect(sourceKey('::ffff:192.0.2.9')).toBe('192.0.2.9')
    expect(sourceKey('192.0.2.9')).toBe('192.0.2.9')
    expect(sourceKey(undefined)).toBe('?')
  })

  it('one host cycling through its /64 still meets the per-source cap', async () => {
    const accept = await acceptor()
    const g = new HandshakeGuard({ log: memoryLogger(), perSource: 2 })
    expect(g.admit(await accept('2001:db8::1'), 'socks5')).toBeDefined()
    expect(g.admit(await accept('2001:db8::2'), 'socks5')).toBeDefined()
    expect(g.admit(await accept('2001:db8::3'), 'socks5')).toBeUndefined()
    expect(g.admit(await accept('2001:db8:0:1::3'), 'socks5')).toBeDefined()
  })

  it('calls onExpire at the deadline unless done() came first, and frees the slot', async () => {
    const accept = await acceptor()
    const g = new HandshakeGuard({ log: memoryLogger(), perSource: 1 })
    let expired = 0
    const t0 = Date.now()
    g.admit(await accept('192.0.2.1'), 'socks5', { ms: 100, onExpire: () => expired++ })
    const finished = g.admit(await accept('192.0.2.2'), 'socks5', { ms: 100, onExpire: () => expired++ })
    finished!.done()
    while (expired === 0 && Date.now() - t0 < 2_000) await new Promise((r) => setTimeout(r, 10))
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95)
    await new Promise((r) => setTimeout(r, 150))
    expect(expired).toBe(1)
    expect(g.open).toBe(0)
    expect(g.admit(await accept('192.0.2.1'), 'socks5')).toBeDefined()
  })

  it('refuses while free descriptors are below the reserve, and admits again once they are back', async () => {
    const accept = await acceptor()
    let open = 900
    let now = 0
    const reserve = new DescriptorReserve({ limit: 1024, openCount: () => open, now: () => now })
    expect(reserve.reserve).toBe(103) // 10 % of 1024, rounded up
    const g = new HandshakeGuard({ log: memoryLogger(), reserve })
    // 124 free, 103 kept: 22 admissions fit (they count until the next sample sees them).
    const admitted = []
    for (let i = 0; i < 30; i++) admitted.push(g.admit(await accept(`192.0.2.${i}`), 'socks5'))
    expect(admitted.filter(Boolean).length).toBe(22)
    expect(g.open).toBe(22)
    // Connections elsewhere closed; the next sample (100 ms later, this close) sees it.
    open = 800
    now = 50
    expect(g.admit(await accept('192.0.2.99'), 'socks5')).toBeUndefined()
    now = 100
    expect(g.admit(await accept('192.0.2.99'), 'socks5')).toBeDefined()
  })

  it('warns about refusals at most once per 10 s per reason, then says how many it held back', async () => {
    const accept = await acceptor()
    let now = 0
    const log = memoryLogger()
    const g = new HandshakeGuard({ log, perSource: 1, total: 100, now: () => now })
    g.admit(await accept('192.0.2.1'), 'socks5')
    for (let i = 0; i < 5; i++) g.admit(await accept('192.0.2.1'), 'socks5')
    const warnings = () => log.lines.filter((l) => l.includes('warning:'))
    expect(warnings()).toHaveLength(1)
    expect(log.lines.filter((l) => !l.includes('warning:') && l.includes('refused'))).toHaveLength(4) // at -v
    now = 10_000
    g.admit(await accept('192.0.2.1'), 'socks5')
    expect(warnings()).toHaveLength(2)
    expect(warnings()[1]).toMatch(/and 4 more refused for this reason since the last warning/)
  })

  it('has defaults that let a browser through one proxy and bound a flood', () => {
    expect(HANDSHAKE_LIMITS.perSource).toBeGreaterThanOrEqual(200)
    expect(HANDSHAKE_LIMITS.total).toBeGreaterThanOrEqual(4 * HANDSHAKE_LIMITS.perSource)
  })
})
