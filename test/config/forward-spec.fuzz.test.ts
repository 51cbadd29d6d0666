/**
 * Property-based fuzzing of -L/-R parsing (src/config/forward-spec.ts): any text either parses
 * into a spec with ports in range and a usable host, or throws USAGE; well-formed specs survive
 * a trip through formatForward().
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { formatForward, isNonLoopbackBind, parseForward, type ForwardSpec } from '../../src/config/forward-spec'
import { anyText, tokenText, typed } from '../fuzz-helpers'

const specText = fc.oneof(
  anyText,
  tokenText([':', ':', '[', ']', '\\', '/', '*', '0', '22', '8080', '65535', '65536', 'localhost', 'db', '::1', 'fd00::1', '127.0.0.1', ' ', '\t', '']),
)
const kind = fc.constantFrom<'local' | 'remote'>('local', 'remote')
/** Hosts formatForward() writes back unambiguously (no backslash, brackets or slash). */
const plainHost = /^[A-Za-z0-9._:*-]+$/

const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6())
const generated = fc.record({
  kind,
  bind: fc.option(fc.oneof(host, fc.constant('*')), { nil: undefined }),
  bindPort: fc.integer({ min: 1, max: 65535 }),
  host,
  hostPort: fc.integer({ min: 1, max: 65535 }),
})
const br = (h: string): string => (h.includes(':') ? `[${h}]` : h)

function checkSpec(s: ForwardSpec): void {
  expect(s.bindPort).toBeGreaterThanOrEqual(s.kind === 'local' ? 1 : 0)
  expect(s.bindPort).toBeLessThanOrEqual(65535)
  expect(s.hostPort).toBeGreaterThanOrEqual(1)
  expect(s.hostPort).toBeLessThanOrEqual(65535)
  expect(s.host).not.toBe('')
  expect(s.host).not.toMatch(/\s/)
  expect(s.bindHost).not.toMatch(/\s/)
}

describe('forward spec parsing under fuzzing', () => {
  it('random text: a sane spec or USAGE, nothing else', () => {
    fc.assert(
      fc.property(kind, specText, (k, text) => {
        const r = typed(() => parseForward(k, text), ['USAGE'])
        if (!r.ok) {
          expect(r.error.hint).toBeTruthy()
          return
        }
        checkSpec(r.value)
        isNonLoopbackBind(r.value)
        const f = formatForward(r.value)
        // What formatForward prints for plain hosts parses back to the same spec.
        if (plainHost.test(r.value.host) && plainHost.test(r.value.bindHost)) {
          expect(parseForward(k, f.slice(3))).toEqual(r.value)
        }
      }),
      { numRuns: 2000 },
    )
  })

  it('generated specs parse to what was written and round-trip through formatForward', () => {
    fc.assert(
      fc.property(generated, (g) => {
        const text = `${g.bind === undefined ? '' : `${br(g.bind)}:`}${g.bindPort}:${br(g.host)}:${g.hostPort}`
        const s = parseForward(g.kind, text)
        expect(s).toEqual({ kind: g.kind, bindHost: g.bind ?? 'localhost', bindPort: g.bindPort, host: g.host, hostPort: g.hostPort })
        expect(parseForward(g.kind, formatForward(s).slice(3))).toEqual(s)
      }),
      { numRuns: 1000 },
    )
  })
})
