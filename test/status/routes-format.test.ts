import { describe, expect, it } from 'vitest'
import { formatRoutes } from '../../src/status/routes-format'
import type { StatusSnapshot } from '../../src/status/status-types'

const base = { pid: 42, version: '0', instanceId: 'ab12', startedAt: '', uptimeS: 1, remotes: [], subnets: [], excludes: [], proxies: [], forwards: [], connections: [], totals: { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 } } as unknown as StatusSnapshot

describe('formatRoutes', () => {
  it('one aligned line per network: route, origin, why, and until when a learnt one stays', () => {
    const now = Date.parse('2026-01-01T10:00:00Z')
    const out = formatRoutes([{ ...base, method: 'nft', routes: [
      { net: '10.20.0.0/16', action: 'tunnel', origin: 'auto-net', why: '10.20.0.0/16 via 10.1.0.254 dev eth1' },
      { net: '10.9.8.7/32', action: 'tunnel', origin: 'learnt', why: 'db.corp.internal', until: '2026-01-01T10:01:10.000Z' },
      { net: '10.250.0.1/32', action: 'direct', origin: 'transport' },
    ] }], now)
    expect(out.split('\n')).toEqual([
      'instance ab12 · pid 42 · nft',
      '  ROUTE   NETWORK        ORIGIN         WHY',
      '  tunnel  10.20.0.0/16   auto-net       10.20.0.0/16 via 10.1.0.254 dev eth1',
      '  tunnel  10.9.8.7/32    learnt         db.corp.internal, until 10:01:10 (in 70 s)',
      '  direct  10.250.0.1/32  SSH transport',
      '',
    ])
  })

  it('says when nothing runs or nothing is routed', () => {
    expect(formatRoutes([])).toBe('no subnet-tunnel instance is running')
    expect(formatRoutes([{ ...base, routes: [] }])).toContain('nothing is routed')
  })
})
