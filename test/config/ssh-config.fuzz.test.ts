/**
 * Property-based fuzzing of ssh configuration input (src/config/ssh-config.ts,
 * ssh-config-fallback.ts, ssh-destination.ts): `ssh -G` output, config files read by the
 * fallback parser, -o options and -r destinations. Each either yields a configuration or throws
 * the module's TunnelError (SSH_CONFIG for configuration, USAGE for the destination).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { checkOptionName, computeWithParser, splitOption } from '../../src/config/ssh-config-fallback'
import { expandEnv, expandTilde, expandTokens, parseSshGOutput, toHostConfig } from '../../src/config/ssh-config'
import { parseSshDestination } from '../../src/config/ssh-destination'
import { anyText, tokenText, typed } from '../fuzz-helpers'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-sshcfg-fuzz-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const KEYS = ['hostname', 'port', 'user', 'identityfile', 'proxyjump', 'proxycommand', 'serveraliveinterval', 'serveralivecountmax',
  'stricthostkeychecking', 'userknownhostsfile', 'globalknownhostsfile', 'connecttimeout', 'identityagent', 'batchmode', 'hostkeyalias',
  'hashknownhosts', 'identitiesonly', 'Port', 'HostName']
const VALUES = ['22', '0', '-1', '65536', '1e3', 'none', 'yes', 'no', 'ask', 'accept-new', 'maybe', '~/x', '%h', '%%', '%z', '${HOME}', '${', '$SSH_AUTH_SOCK',
  'a,b', ' ', '', 'SSH_AUTH_SOCK', '"q"', '\t', 'x y', '3.5', '\u00e9']
const key = fc.oneof(fc.constantFrom(...KEYS), fc.stringMatching(/^\S{1,12}$/))
const value = fc.oneof(fc.constantFrom(...VALUES), tokenText(VALUES, 4), anyText)
/** `ssh -G`-shaped text: key value lines, some junk lines. */
const sshGText = fc
  .array(fc.oneof({ weight: 5, arbitrary: fc.tuple(key, value).map(([k, v]) => `${k} ${v}`) }, { weight: 1, arbitrary: anyText }), { maxLength: 20 })
  .map((l) => l.join('\n'))

const ctx = { dest: { host: 'bastion' }, home: '/home/u', env: { HOME: '/home/u', SSH_AUTH_SOCK: '/tmp/agent' }, explicitKeepalive: false, fromSshG: true }

describe('ssh config input under fuzzing', () => {
  it('ssh -G output: every key/value line parses; toHostConfig yields a config or SSH_CONFIG', () => {
    fc.assert(
      fc.property(sshGText, (text) => {
        const raw = parseSshGOutput(text)
        for (const k of raw.keys()) expect(k).toBe(k.toLowerCase())
        const r = typed(() => toHostConfig(raw, ctx), ['SSH_CONFIG'])
        if (!r.ok) return
        const c = r.value
        expect(Number.isInteger(c.port) && c.port >= 0).toBe(true)
        expect(Number.isInteger(c.serverAliveInterval) && c.serverAliveInterval >= 0).toBe(true)
        expect(['yes', 'no', 'ask', 'accept-new']).toContain(c.strictHostKeyChecking)
        expect(c.hostName).toBeTypeOf('string')
      }),
      { numRuns: 1000 },
    )
  })

  it('the fallback parser on random config files and -o options: raw options or SSH_CONFIG', () => {
    const line = fc.oneof(
      fc.tuple(fc.constantFrom('Host', 'Match', 'Include', 'HostName', 'Port', 'User', 'IdentityFile', 'ProxyJump', 'host', 'Bogus'), fc.constantFrom(' ', '=', ' = ', '\t'), value).map((p) => p.join('')),
      tokenText(['Host ', 'Match ', 'all', 'exec ', '"', '*', '!', '=', '\n', '  ', '#', 'bastion'], 8),
      anyText,
    )
    let n = 0
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.array(fc.oneof(tokenText(['Port', '=', ' ', '22', 'User', 'Bogus', 'GSSAPIAuthentication', 'yes']), anyText), { maxLength: 3 }), (lines, options) => {
        const file = join(dir, `c${n++}`)
        writeFileSync(file, lines.join('\n'))
        const req = { destination: 'bastion', configFile: file, identities: [], options }
        const r = typed(() => computeWithParser(req, { host: 'bastion' }, undefined, '/home/u'), ['SSH_CONFIG'])
        if (!r.ok) return
        expect(r.value.get('identityfile')!.length).toBeGreaterThan(0)
        typed(() => toHostConfig(r.value, { ...ctx, fromSshG: false }), ['SSH_CONFIG'])
      }),
      { numRuns: 300 },
    )
  })

  it('regression: a malformed Match line (ssh-config throws a plain Error) becomes SSH_CONFIG naming the file', () => {
    const file = join(dir, 'match22')
    writeFileSync(file, 'Match 22\n')
    const r = typed(() => computeWithParser({ destination: 'bastion', configFile: file, identities: [], options: [] }, { host: 'bastion' }, undefined, '/home/u'), ['SSH_CONFIG'])
    expect(r.ok).toBe(false)
    expect(!r.ok && r.error.message).toBe(`${file}: Missing value for match criteria 22`)
  })

  it('-o text: splitOption never throws and checkOptionName throws only SSH_CONFIG', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, tokenText(['Port', 'port', '=', ' ', '\t', '22', 'GSSAPIx', 'Bogus', '"'])), (o) => {
        const [k, v] = splitOption(o)
        expect(k).toBeTypeOf('string')
        expect(v).toBe(v.trim())
        typed(() => checkOptionName(o), ['SSH_CONFIG'])
      }),
      { numRuns: 1000 },
    )
  })

  it('token, tilde and ${ENV} expansion never throw and leave text without markers alone', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, tokenText(['%', '%%', '%h', '~', '~/', '${', '}', 'HOME', '$'])), fc.dictionary(fc.string({ maxLength: 4 }), anyText), (s, env) => {
        const out = expandTilde(expandTokens(expandEnv(s, env), { h: 'H', '%': '%' }), '/home/u')
        expect(out).toBeTypeOf('string')
        if (!/[%~$]/.test(s)) expect(out).toBe(s)
      }),
      { numRuns: 800 },
    )
  })

  it('-r destinations: user, host and port in range, or USAGE', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, tokenText(['ssh://', '@', ':', '[', ']', '::1', 'host', 'user', '-', '/', '22', '65536', ' '])), (s) => {
        const r = typed(() => parseSshDestination(s), ['USAGE'])
        if (!r.ok) return
        expect(r.value.host).not.toBe('')
        expect(r.value.host.startsWith('-')).toBe(false)
        if (r.value.port !== undefined) expect(r.value.port >= 1 && r.value.port <= 65535).toBe(true)
        if (r.value.user !== undefined) expect(r.value.user).not.toBe('')
      }),
      { numRuns: 1000 },
    )
  })
})
