/**
 * Property-based fuzzing of subnet/exclude resolution (src/config/subnets.ts) with a fake
 * resolver that answers anything — addresses, garbage, nothing, or an error: the result is a
 * list of networks or a BAD_CIDR / UNKNOWN_HOST error, never anything else.
 */
import type os from 'node:os'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { formatCidr, tryParseCidr } from '../../src/config/cidr'
import { localAddressNetworks, resolveNetworks, transportExcludes, type HostLookup } from '../../src/config/subnets'
import { anyText, tokenText, typedAsync } from '../fuzz-helpers'

const item = fc.oneof(
  anyText,
  fc.domain(),
  tokenText(['10.0.0.0/8', '/', '.', 'host', '-', '_', '1.2.3', '::', 'fd00::/', '64', ' ', 'a'.repeat(64), '.corp']),
)
const answer = fc.oneof(fc.ipV4(), fc.ipV6(), anyText, fc.constant('fe80::1%eth0'))
/** What the fake resolver does for every name: answer a list, or fail. */
const behaviour = fc.oneof(fc.array(answer, { maxLength: 4 }), fc.constant('fail' as const))

function fakeLookup(b: string[] | 'fail'): HostLookup {
  return async () => {
    if (b === 'fail') throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' })
    return b
  }
}

describe('subnet resolution under fuzzing', () => {
  it('random items and resolver answers: canonical unique networks, or BAD_CIDR / UNKNOWN_HOST', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 5 }), behaviour, async (items, b) => {
        const r = await typedAsync(() => resolveNetworks(items, fakeLookup(b)), ['BAD_CIDR', 'UNKNOWN_HOST'])
        if (!r.ok) return
        const texts = r.value.map(formatCidr)
        expect(new Set(texts).size).toBe(texts.length)
        for (const c of r.value) expect(tryParseCidr(formatCidr(c))).toEqual(c)
      }),
      { numRuns: 1000 },
    )
  })

  it('transport excludes never fail: unresolvable or odd hosts are skipped', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 4 }), fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 3 }), fc.boolean(), async (hosts, addrs, fail) => {
        const out = await transportExcludes(hosts, fakeLookup(fail ? 'fail' : addrs))
        for (const c of out) expect(c.prefix).toBe(c.family === 4 ? 32 : 128)
      }),
      { numRuns: 500 },
    )
  })

  it('local interface addresses of any shape never throw', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), answer), { maxLength: 3 })), (d) => {
        const ifaces = Object.fromEntries(Object.entries(d).map(([k, list]) => [k, list.map((address) => ({ address }) as os.NetworkInterfaceInfo)]))
        for (const c of localAddressNetworks(ifaces)) expect(c.prefix).toBe(c.family === 4 ? 32 : 128)
      }),
      { numRuns: 500 },
    )
  })
})
