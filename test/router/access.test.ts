import { describe, expect, it } from 'vitest'
import { AccessPolicy, isLoopbackBind } from '../../src/router/access'
import { ConnTracker } from '../../src/router/conn-tracker'

describe('AccessPolicy', () => {
  it('allows loopback only by default', () => {
    const p = new AccessPolicy()
    expect(p.allows('127.0.0.1')).toBe(true)
    expect(p.allows('127.9.9.9')).toBe(true)
    expect(p.allows('::1')).toBe(true)
    expect(p.allows('::ffff:127.0.0.1')).toBe(true)
    expect(p.allows('10.0.0.5')).toBe(false)
    expect(p.allows(undefined)).toBe(false)
  })
  it('adds the --allow networks, IPv4-mapped clients included', () => {
    const p = new AccessPolicy(['192.168.1.0/24', 'fd00::/64'])
    expect(p.allows('192.168.1.77')).toBe(true)
    expect(p.allows('::ffff:192.168.1.77')).toBe(true)
    expect(p.allows('192.168.2.1')).toBe(false)
    expect(p.allows('fd00::9')).toBe(true)
    expect(() => new AccessPolicy(['nope'])).toThrow(/invalid subnet/)
  })
  it('knows loopback binds', () => {
    expect(isLoopbackBind('127.0.0.1')).toBe(true)
    expect(isLoopbackBind('::1')).toBe(true)
    expect(isLoopbackBind('0.0.0.0')).toBe(false)
    expect(isLoopbackBind('192.168.1.2')).toBe(false)
  })
})

describe('ConnTracker', () => {
  it('notifies observers on open and close with live byte counts and totals', () => {
    const t = new ConnTracker()
    const seen: string[] = []
    t.observe({ opened: (c) => seen.push(`open #${c.meta.id}`), closed: (c, e) => seen.push(`close #${c.meta.id} ${c.bytesUp}/${c.bytesDown} ${e.error ?? 'ok'}`) })
    const meta = { id: t.nextId(), frontEnd: 'socks5' as const, srcAddress: '127.0.0.1', srcPort: 5 }
    const c = t.open(meta, { host: 'db', port: 5432 })
    c.bytesUp += 10
    c.bytesDown += 20
    expect(t.active()).toHaveLength(1)
    t.close(c, 'reset')
    t.close(c) // idempotent
    expect(seen).toEqual(['open #1', 'close #1 10/20 reset'])
    expect(t.totals).toEqual({ active: 0, total: 1, failed: 1, bytesUp: 10, bytesDown: 20 })
  })
})
