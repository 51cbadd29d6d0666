import { describe, expect, it } from 'vitest'
import { cidrContains, formatCidr, parseCidr, tryParseCidr } from '../../src/config/cidr'
import { TunnelError } from '../../src/errors'

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/16', '10.0.0.0/16'],
    ['10.1.2.3/16', '10.1.0.0/16'],
    ['10.1.2.3', '10.1.2.3/32'],
    ['0/0', '0.0.0.0/0'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['::/0', '::/0'],
    ['fd00:1:2:3::1/64', 'fd00:1:2:3::/64'],
    ['::1', '::1/128'],
    ['172.16.0.0/12', '172.16.0.0/12'],
    ['10.255.255.255/9', '10.128.0.0/9'],
  ])('%s → %s', (input, out) => {
    expect(formatCidr(parseCidr(input))).toBe(out)
  })

  it.each(['10.0.0.0/33', '10.0.0/8', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/', 'abc', '', '1.2.3.4/8/9', '010.0.0.1'])(
    'rejects %j with BAD_CIDR and a hint',
    (input) => {
      expect(tryParseCidr(input)).toBeUndefined()
      try {
        parseCidr(input)
        expect.unreachable()
      } catch (e) {
        expect(e).toBeInstanceOf(TunnelError)
        expect((e as TunnelError).code).toBe('BAD_CIDR')
        expect((e as TunnelError).hint).toMatch(/CIDR/)
      }
    },
  )

  it('contains', () => {
    expect(cidrContains(parseCidr('10.0.0.0/8'), '10.200.1.1')).toBe(true)
    expect(cidrContains(parseCidr('10.0.0.0/8'), '11.0.0.1')).toBe(false)
    expect(cidrContains(parseCidr('fd00::/16'), 'fd00:1::1')).toBe(true)
    expect(cidrContains(parseCidr('fd00::/16'), '10.0.0.1')).toBe(false)
  })
})

describe('cidrsOverlap', () => {
  it('is true when one network contains the other, either way round, and only within a family', async () => {
    const { cidrsOverlap } = await import('../../src/config/cidr')
    expect(cidrsOverlap(parseCidr('10.0.0.0/8'), parseCidr('10.1.2.3/32'))).toBe(true)
    expect(cidrsOverlap(parseCidr('10.1.2.3/32'), parseCidr('10.0.0.0/8'))).toBe(true)
    expect(cidrsOverlap(parseCidr('10.0.0.0/8'), parseCidr('11.0.0.0/8'))).toBe(false)
    expect(cidrsOverlap(parseCidr('::/0'), parseCidr('10.0.0.0/8'))).toBe(false)
  })
})
