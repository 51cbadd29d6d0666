/**
 * Property-based fuzzing of CIDR parsing (src/config/cidr.ts): random text never throws past
 * the parser (tryParseCidr → undefined, parseCidr/hostCidr → BAD_CIDR), and what it accepts is
 * normalised: parsing the canonical form again gives the same network.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { cidrContains, formatCidr, hostCidr, isIpLiteral, parseCidr, tryParseCidr, uniqueCidrs } from '../../src/config/cidr'
import { anyText, tokenText, typed } from '../fuzz-helpers'

const cidrish = tokenText(['.', ':', '::', '/', '0', '1', '255', '256', '10', 'ffff', 'fd00', '%eth0', ' ', '[', ']', '0/0', '::/0', '-', 'x', '1.2.3.4', '::ffff:'])
const text = fc.oneof(anyText, cidrish)
const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }))
const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 }))

describe('cidr parsing under fuzzing', () => {
  it('random text: undefined or a normalised network; the typed variants throw only BAD_CIDR', () => {
    fc.assert(
      fc.property(text, text, (s, ip) => {
        const c = tryParseCidr(s)
        const p = typed(() => parseCidr(s), ['BAD_CIDR'])
        expect(p.ok).toBe(c !== undefined)
        typed(() => hostCidr(s), ['BAD_CIDR'])
        isIpLiteral(s)
        if (!c) return
        expect(c.prefix).toBeGreaterThanOrEqual(0)
        expect(c.prefix).toBeLessThanOrEqual(c.family === 4 ? 32 : 128)
        // Canonical: re-parsing the formatted network is a fixed point.
        expect(tryParseCidr(formatCidr(c))).toEqual(c)
        expect(cidrContains(c, c.address)).toBe(true)
        cidrContains(c, ip)
      }),
      { numRuns: 2000 },
    )
  })

  it('every generated IPv4/IPv6 network parses, contains its address and clears host bits', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), ([addr, prefix]) => {
        const c = parseCidr(`${addr}/${prefix}`)
        expect(c.family).toBe(addr.includes(':') ? 6 : 4)
        expect(c.prefix).toBe(prefix)
        expect(cidrContains(c, addr)).toBe(true)
        expect(tryParseCidr(`${c.address}/${prefix}`)).toEqual(c)
        expect(hostCidr(addr).prefix).toBe(c.family === 4 ? 32 : 128)
        // Prefixes beyond the family's width are refused.
        expect(tryParseCidr(`${addr}/${(c.family === 4 ? 33 : 129) + (prefix % 50)}`)).toBeUndefined()
      }),
      { numRuns: 1000 },
    )
  })

  it('uniqueCidrs keeps the first of each network and nothing else', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(v4, v6).map(([a, p]) => parseCidr(`${a}/${p}`)), { maxLength: 20 }), (list) => {
        const u = uniqueCidrs([...list, ...list])
        expect(new Set(u.map(formatCidr)).size).toBe(u.length)
        expect(u.map(formatCidr)).toEqual([...new Set(list.map(formatCidr))])
      }),
      { numRuns: 300 },
    )
  })
})
