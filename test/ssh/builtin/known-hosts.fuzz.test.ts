/**
 * Property-based fuzzing of known_hosts handling (src/ssh/builtin/known-hosts.ts). The file is user- and
 * admin-edited text, so parsing must never throw: a bad line becomes a "problem" and is skipped
 * (like OpenSSH), and lookups over whatever was parsed must not throw either. Valid lines —
 * plain, hashed, [host]:port, with markers and comments — round-trip.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  checkHostKey,
  formatKnownHostLine,
  globMatch,
  hashHostName,
  keyTypeOfBlob,
  knownHostsName,
  lookupHost,
  matchPatternList,
  parseKnownHosts,
} from '../../../src/ssh/builtin/known-hosts'
import { anyText, tokenText } from '../../fuzz-helpers'

function sshString(b: Buffer | string): Buffer {
  const v = typeof b === 'string' ? Buffer.from(b, 'latin1') : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(v.length)
  return Buffer.concat([len, v])
}

/** A structurally valid public key blob of a random type (the key material is random bytes). */
const keyBlob = fc
  .tuple(fc.constantFrom('ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'sk-ssh-ed25519@openssh.com'), fc.uint8Array({ minLength: 1, maxLength: 64 }))
  .map(([type, body]) => Buffer.concat([sshString(type), ...(type.startsWith('ecdsa-') ? [sshString(type.slice('ecdsa-sha2-'.length))] : []), sshString(Buffer.from(body))]))

const hostLabel = fc.stringMatching(/^[a-z0-9-]{1,12}$/)
const host = fc.oneof(fc.array(hostLabel, { minLength: 1, maxLength: 3 }).map((l) => l.join('.')), fc.ipV4())
const port = fc.oneof(fc.constant(22), fc.integer({ min: 1, max: 65535 }))

const junkLine = fc.oneof(
  anyText,
  tokenText(['@revoked ', '@cert-authority ', '@bogus ', '|1|', '|', '[', ']', ':2222', ',', '!', '*', '?', ' ', '\t', 'ssh-ed25519 ', 'ssh-rsa ', '1024 ', '35 ', 'AAAA', '=', '==', '#', '\r', 'host']),
  fc.tuple(fc.constantFrom('', '@revoked ', '@cert-authority '), fc.oneof(host, fc.constant('|1|abc|def')), fc.constantFrom('ssh-ed25519', 'ssh-rsa', 'x'), fc.base64String({ maxLength: 80 }))
    .map(([m, h, t, b]) => `${m}${h} ${t} ${b}`),
  fc.tuple(host, keyBlob, fc.nat(20)).map(([h, blob, cut]) => `${h} ${keyTypeOfBlob(blob)} ${blob.subarray(0, Math.max(1, blob.length - cut)).toString('base64')}`),
)

describe('known_hosts under fuzzing', () => {
  it('random files never throw; every line is an entry, a problem, blank or a comment', () => {
    fc.assert(
      fc.property(fc.array(junkLine, { maxLength: 12 }), keyBlob, host, port, (lines, blob, h, p) => {
        const text = lines.join('\n')
        const { entries, problems } = parseKnownHosts(text, 'kh')
        const lineCount = text.split('\n').length
        expect(entries.length + problems.length).toBeLessThanOrEqual(lineCount)
        for (const e of entries) {
          expect(e.line).toBeGreaterThanOrEqual(1)
          expect(e.line).toBeLessThanOrEqual(lineCount)
          expect(keyTypeOfBlob(e.key)).toBe(e.keyType)
        }
        // Lookups over whatever was parsed never throw, for any host and key.
        lookupHost(entries, h, p)
        const c = checkHostKey(entries, h, p, blob)
        expect(['match', 'mismatch', 'revoked', 'unknown']).toContain(c.status)
        checkHostKey(entries, h, p, Buffer.from(text.slice(0, 8)))
      }),
      { numRuns: 1000 },
    )
  })

  it('valid lines (plain, hashed, [host]:port, markers, comments) round-trip and match their host only', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ host, port, blob: keyBlob, hashed: fc.boolean(), marker: fc.constantFrom(undefined, 'revoked', 'cert-authority'), comment: fc.option(fc.stringMatching(/^[!-~]{1,10}( [!-~]{1,10})?$/), { nil: undefined }) }), { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        (specs, crlf) => {
          const lines = specs.map((s) => {
            const name = knownHostsName(s.host, s.port)
            const base = formatKnownHostLine(name, s.blob, s.hashed).trimEnd()
            return `${s.marker ? `@${s.marker} ` : ''}${base}${s.comment ? ` ${s.comment}` : ''}`
          })
          const { entries, problems } = parseKnownHosts(lines.join(crlf ? '\r\n' : '\n'))
          expect(problems).toEqual([])
          expect(entries.length).toBe(specs.length)
          specs.forEach((s, i) => {
            const e = entries[i]!
            expect(e.key.equals(s.blob)).toBe(true)
            expect(e.marker).toBe(s.marker)
            expect(e.comment).toBe(s.comment)
            expect(lookupHost(entries, s.host.toUpperCase(), s.port)).toContain(e)
            // A different port is a different name (unless both mean 22).
            const other = s.port === 65535 ? 65534 : s.port + 1
            expect(lookupHost([e], s.host, other)).toEqual([])
          })
          const first = specs[0]!
          const c = checkHostKey(entries, first.host, first.port, first.blob)
          if (first.marker === 'revoked') expect(c.status).toBe('revoked')
          else if (first.marker === undefined) expect(['match', 'revoked']).toContain(c.status)
        },
      ),
      { numRuns: 500 },
    )
  })

  it('hashed names match exactly the hashed name, case-insensitively', () => {
    fc.assert(
      fc.property(host, port, host, keyBlob, (h, p, other, blob) => {
        const line = `${hashHostName(knownHostsName(h, p))} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}`
        const { entries } = parseKnownHosts(line)
        expect(lookupHost(entries, h.toUpperCase(), p).length).toBe(1)
        if (knownHostsName(other, p) !== knownHostsName(h, p)) expect(lookupHost(entries, other, p)).toEqual([])
      }),
      { numRuns: 300 },
    )
  })

  it('glob matching terminates and agrees with a regular expression', () => {
    const patText = tokenText(['*', '?', 'a', 'b', '.', '**', '*.', 'ab'], 10)
    fc.assert(
      fc.property(tokenText(['a', 'b', '.', 'ab'], 12), patText, tokenText([',', '!', '*', 'a', '?', 'b.'], 10), (s, p, list) => {
        const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^]*').replace(/\?/g, '[^]')}$`)
        expect(globMatch(s, p)).toBe(re.test(s))
        expect([1, 0, -1]).toContain(matchPatternList(s, list))
      }),
      { numRuns: 1500 },
    )
  })
})
