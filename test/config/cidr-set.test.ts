/**
 * Containment by number (src/config/cidr-set.ts) agrees with cidr.ts's text-based functions,
 * and CidrSet finds the same holder as a search through every member.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { cidrsOverlap, formatCidr, parseCidr, type Cidr } from '../../src/config/cidr'
import { CidrSet, cidrWithin } from '../../src/config/cidr-set'

// Networks close to each other, so that containment happens often.
const v4 = fc.tuple(fc.constantFrom('10.0.0.0', '10.1.0.0', '10.1.2.0', '10.1.2.3', '192.168.0.0'), fc.integer({ min: 0, max: 32 }))
const v6 = fc.tuple(fc.constantFrom('fd00::', 'fd00:1::', 'fd00:1::5', '::', '::ffff:10.1.0.0'), fc.integer({ min: 0, max: 128 }))
const net = fc.oneof(v4, v6, fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })), fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 }))).map(([a, p]) => parseCidr(`${a}/${p}`))

describe('cidrWithin', () => {
  it('examples: equal counts, the other family never, a narrower network does not hold a broader one', () => {
    const c = (s: string) => parseCidr(s)
    expect(cidrWithin(c('10.1.2.0/24'), c('10.0.0.0/8'))).toBe(true)
    expect(cidrWithin(c('10.0.0.0/8'), c('10.0.0.0/8'))).toBe(true)
    expect(cidrWithin(c('10.0.0.0/8'), c('10.1.2.0/24'))).toBe(false)
    expect(cidrWithin(c('11.0.0.0/24'), c('10.0.0.0/8'))).toBe(false)
    expect(cidrWithin(c('::ffff:10.1.0.0/112'), c('10.0.0.0/8'))).toBe(false)
    expect(cidrWithin(c('fd00:1::5/128'), c('fd00::/8'))).toBe(true)
    expect(cidrWithin(c('0.0.0.0/0'), c('0.0.0.0/0'))).toBe(true)
  })

  it('agrees with cidr.ts for any two networks', () => {
    fc.assert(
      fc.property(net, net, (a, b) => {
        expect(cidrWithin(a, b)).toBe(b.prefix <= a.prefix && cidrsOverlap(a, b))
      }),
      { numRuns: 3000 },
    )
  })
})

describe('CidrSet', () => {
  it('holder: the broadest member holding a network (strict: not the equal one); the first value of equals stays', () => {
    const s = new CidrSet<string>()
    s.add(parseCidr('10.1.0.0/16'), 'a')
    s.add(parseCidr('10.0.0.0/8'), 'b')
    s.add(parseCidr('10.0.0.0/8'), 'c')
    expect(s.holder(parseCidr('10.1.2.0/24'))).toBe('b')
    expect(s.holder(parseCidr('10.0.0.0/8'))).toBe('b')
    expect(s.holder(parseCidr('10.0.0.0/8'), true)).toBeUndefined()
    expect(s.holder(parseCidr('fd00::/8'))).toBeUndefined()
  })

  it('finds what a search through every member finds', () => {
    fc.assert(
      fc.property(fc.array(net, { maxLength: 20 }), net, fc.boolean(), (members, probe, strict) => {
        const s = new CidrSet<Cidr>()
        for (const m of members) s.add(m, m)
        const holders = members.filter((m) => cidrWithin(probe, m) && !(strict && m.prefix === probe.prefix))
        const broadest = holders.sort((x, y) => x.prefix - y.prefix)[0]
        const found = s.holder(probe, strict)
        expect(found === undefined ? undefined : formatCidr(found)).toBe(broadest === undefined ? undefined : formatCidr(broadest))
      }),
      { numRuns: 1000 },
    )
  })
})
