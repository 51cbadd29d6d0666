/**
 * Property-based fuzzing of resolver configuration parsing (src/dns/resolv-conf.ts): the
 * bastion's /etc/resolv.conf (remote, untrusted text), `resolvectl dns` output and --to-ns.
 * Lenient like glibc — bad lines are skipped, nothing throws — and what comes out is always a
 * unique list of IP literals.
 */
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { parseResolvConf, parseResolvectlDns, parseServerSpec, remoteResolvers } from '../../src/dns/resolv-conf'
import { anyText, tokenText } from '../fuzz-helpers'

const word = ['nameserver ', 'search ', 'domain ', 'options ', '#', ';', '\n', '\r\n', ' ', '\t', '10.0.0.2', '::1', 'fe80::1%eth0', '127.0.0.53', '%', 'corp.', '.', '1.2.3.4:53', '[fd00::53]:53', 'Global: ', 'Link 2 (eth0): ', '#dns.example']
const text = fc.oneof(anyText, tokenText(word, 20), fc.array(fc.tuple(fc.constantFrom('nameserver', 'search', 'domain', 'Global:', 'Link 3 (x):'), fc.oneof(fc.ipV4(), fc.ipV6(), anyText)), { maxLength: 6 }).map((l) => l.map((p) => p.join(' ')).join('\n')))

describe('resolv.conf parsing under fuzzing', () => {
  it('random text: unique IP nameservers, non-empty search domains; never throws', () => {
    fc.assert(
      fc.property(text, (t) => {
        const c = parseResolvConf(t)
        for (const a of c.nameservers) expect(net.isIP(a)).not.toBe(0)
        expect(new Set(c.nameservers).size).toBe(c.nameservers.length)
        expect(c.scopedNameservers.length).toBe(c.nameservers.length)
        for (const d of c.search) expect(d).not.toBe('')
        for (const d of remoteResolvers(t)) {
          expect(net.isIP(d.host)).not.toBe(0)
          expect(d.port).toBe(53)
        }
        for (const a of parseResolvectlDns(t)) expect(net.isIP(a)).not.toBe(0)
      }),
      { numRuns: 1500 },
    )
  })

  it('--to-ns: an IP and a port 1..65535, or undefined', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, tokenText(['[', ']', ':', '10.0.0.2', 'fd00::53', '0', '53', '65536', ' ', '%eth0'])), (s) => {
        const d = parseServerSpec(s)
        if (!d) return
        expect(net.isIP(d.host)).not.toBe(0)
        expect(Number.isInteger(d.port) && d.port >= 1 && d.port <= 65535).toBe(true)
      }),
      { numRuns: 1000 },
    )
  })
})
