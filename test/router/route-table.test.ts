import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { parseCidr, cidrContains } from '../../src/config/cidr'
import { RouteTable } from '../../src/router/route-table'

const t = (inc: string[], exc: string[] = []) =>
  new RouteTable([
    ...inc.map((c) => ({ cidr: parseCidr(c), action: 'tunnel' as const })),
    ...exc.map((c) => ({ cidr: parseCidr(c), action: 'direct' as const })),
  ])

describe('RouteTable', () => {
  it('tunnels addresses inside an include and nothing else', () => {
    const r = t(['10.0.0.0/16'])
    expect(r.decide('10.0.0.1')).toBe('tunnel')
    expect(r.decide('10.0.255.255')).toBe('tunnel')
    expect(r.decide('10.1.0.0')).toBe('direct')
    expect(r.decide('9.255.255.255')).toBe('direct')
  })

  it('lets the longest prefix win between includes and excludes', () => {
    const r = t(['10.0.0.0/8', '10.1.2.0/24'], ['10.1.0.0/16', '10.1.2.3'])
    expect(r.decide('10.2.0.1')).toBe('tunnel') // /8 include
    expect(r.decide('10.1.9.9')).toBe('direct') // /16 exclude beats /8
    expect(r.decide('10.1.2.4')).toBe('tunnel') // /24 include beats /16 exclude
    expect(r.decide('10.1.2.3')).toBe('direct') // /32 exclude beats /24
  })

  it('prefers an exclude over an include of the very same network', () => {
    expect(t(['10.0.0.0/16'], ['10.0.0.0/16']).decide('10.0.0.1')).toBe('direct')
  })

  it('handles 0/0 and ::/0', () => {
    const r = t(['0/0', '::/0'], ['192.168.1.1', 'fe80::/10'])
    expect(r.decide('8.8.8.8')).toBe('tunnel')
    expect(r.decide('0.0.0.0')).toBe('tunnel')
    expect(r.decide('255.255.255.255')).toBe('tunnel')
    expect(r.decide('192.168.1.1')).toBe('direct')
    expect(r.decide('2001:db8::1')).toBe('tunnel')
    expect(r.decide('fe80::1')).toBe('direct')
  })

  it('matches IPv6 and IPv4-mapped IPv6 addresses', () => {
    const r = t(['fd00:1::/64', '10.0.0.0/8'])
    expect(r.decide('fd00:1::abcd')).toBe('tunnel')
    expect(r.decide('fd00:2::1')).toBe('direct')
    expect(r.decide('::ffff:10.9.9.9')).toBe('tunnel')
    expect(r.decide('::ffff:11.9.9.9')).toBe('direct')
  })

  it('says direct for garbage instead of throwing', () => {
    const r = t(['0/0', '::/0'])
    for (const s of ['', 'host.example', '1.2.3', '1.2.3.400', ':::', '10.0.0.1/8']) {
      expect(r.decide(s)).toBe('direct')
    }
  })

  it('accepts exactly the dotted quads of 1-3 digits each ≤ 255 (property)', () => {
    const r = t(['0.0.0.0/0'])
    const strict = (s: string): boolean => {
      const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
      return m !== null && m.slice(1).every((g) => Number(g) <= 255)
    }
    for (const s of ['0.0.0.0', '255.255.255.255', '010.001.0.9', '256.0.0.1', '1..2.3', '.1.2.3', '1.2.3.', '1.2.3.4.5', '1234.1.1.1', '0001.2.3.4', '1.2.3.4 ', '१.2.3.4']) {
      expect(r.decide(s)).toBe(strict(s) ? 'tunnel' : 'direct')
    }
    const chars = fc.constantFrom('0', '1', '2', '5', '9', '.', 'x')
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 18 }).map((a) => a.join('')), (s) => {
        expect(r.decide(s)).toBe(strict(s) ? 'tunnel' : 'direct')
      }),
      { numRuns: 2000 },
    )
  })

  it('agrees with a naive linear longest-prefix scan (property)', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'))
    const entry = fc.record({ ip: v4, len: fc.integer({ min: 0, max: 32 }), ex: fc.boolean() })
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 12 }), fc.array(v4, { minLength: 1, maxLength: 20 }), (es, probes) => {
        const entries = es.map((e) => ({ cidr: parseCidr(`${e.ip}/${e.len}`), action: e.ex ? ('direct' as const) : ('tunnel' as const) }))
        const r = new RouteTable(entries)
        for (const p of probes) {
          let best: { len: number; action: 'tunnel' | 'direct' } | undefined
          for (const e of entries) {
            if (!cidrContains(e.cidr, p)) continue
            const better = !best || e.cidr.prefix > best.len || (e.cidr.prefix === best.len && e.action === 'direct')
            if (better) best = { len: e.cidr.prefix, action: e.action }
          }
          expect(r.decide(p)).toBe(best?.action ?? 'direct')
        }
      }),
      { numRuns: 300 },
    )
  })

  it('describes itself', () => {
    expect(t(['10.0.0.0/16', 'fd00::/64'], ['10.0.5.0/24']).describe()).toBe(
      '10.0.0.0/16, fd00::/64 (excluding 10.0.5.0/24)',
    )
  })
})

describe('RouteTable.lookup and RoutingDialer', () => {
  it('returns the entry with its remote, longest prefix first', async () => {
    const { RoutingDialer } = await import('../../src/router/routing-dialer')
    const r = new RouteTable([
      { cidr: parseCidr('10.0.0.0/16'), action: 'tunnel', via: 'a' },
      { cidr: parseCidr('10.1.0.0/16'), action: 'tunnel', via: 'b' },
      { cidr: parseCidr('10.1.5.0/24'), action: 'tunnel' },
      { cidr: parseCidr('10.0.9.0/24'), action: 'direct' },
    ])
    expect(r.lookup('10.0.1.1')?.via).toBe('a')
    expect(r.lookup('10.1.1.1')?.via).toBe('b')
    expect(r.lookup('10.1.5.1')?.via).toBeUndefined()
    expect(r.lookup('10.0.9.1')?.action).toBe('direct')
    expect(r.lookup('192.0.2.1')).toBeUndefined()
    const calls: string[] = []
    const fake = (name: string) => ({ dial: async () => (calls.push(name), null as never) })
    const d = new RoutingDialer(r, new Map([['a', fake('a')], ['b', fake('b')], ['main', fake('main')]]), 'main')
    const meta = { id: 1, frontEnd: 'socks5' as const, srcAddress: '127.0.0.1', srcPort: 1 }
    for (const host of ['10.0.1.1', '10.1.1.1', '10.1.5.1', 'db.internal', '192.0.2.1']) await d.dial({ host, port: 1 }, meta)
    expect(calls).toEqual(['a', 'b', 'main', 'main', 'main'])
  })
})
