/**
 * Property-based fuzzing of proxy bind addresses and --proxy-auth (src/config/bind-address.ts):
 * an IP literal and a port 1..65535, or USAGE; formatBind() output parses back to the same.
 */
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { formatBind, parseBindAddress, parseProxyAuth } from '../../src/config/bind-address'
import { anyText, tokenText, typed } from '../fuzz-helpers'

const bindText = fc.oneof(anyText, tokenText(['[', ']', ':', '*', 'localhost', '127.0.0.1', '::1', 'fe80::1%lo', '0', '1080', '65536', ' ', 'host']))

describe('bind address parsing under fuzzing', () => {
  it('random text: an IP and a port, or USAGE; formatBind round-trips', () => {
    fc.assert(
      fc.property(bindText, (s) => {
        const r = typed(() => parseBindAddress(s, '-D'), ['USAGE'])
        if (!r.ok) return
        expect(net.isIP(r.value.host)).not.toBe(0)
        expect(r.value.port >= 1 && r.value.port <= 65535).toBe(true)
        expect(parseBindAddress(formatBind(r.value), '-D')).toEqual(r.value)
      }),
      { numRuns: 1500 },
    )
  })

  it('generated IPv4/IPv6 binds round-trip', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), (ip, port) => {
        const b = parseBindAddress(formatBind({ host: ip, port }), '--http-proxy')
        expect(b).toEqual({ host: ip, port })
      }),
      { numRuns: 500 },
    )
  })

  it('--proxy-auth: user and password split at the first colon, or USAGE', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const r = typed(() => parseProxyAuth(s), ['USAGE'])
        if (!r.ok) return
        expect(r.value.username).not.toBe('')
        expect(r.value.password).not.toBe('')
        expect(`${r.value.username}:${r.value.password}`).toBe(s)
        expect(r.value.username).not.toContain(':')
      }),
      { numRuns: 800 },
    )
  })
})
