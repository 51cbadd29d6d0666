/**
 * ssh-names.ts under fuzzing: the validators against an independent statement of OpenSSH's rules,
 * the destination parser never handing out a name the validators refuse, and — checked by a real
 * shell — no accepted host name runs anything when a ProxyCommand `printf %s %h` expands it.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { parseSshDestination } from '../../src/config/ssh-destination'
import { validSshHostname, validSshUser } from '../../src/config/ssh-names'
import { expandTokens } from '../../src/config/ssh-config'
import { anyText, tokenText, typed } from '../fuzz-helpers'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-names-fuzz-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** ssh_valid_hostname as one regex: no leading '-', none of the metacharacters, nothing ≤ ' ', no DEL. */
const HOST_RULE = /^(?!-)[^'`"$\\;&<>|(){},\x00-\x20\x7f]*$/
const INJECT = ['$(', '`', ';', '&', '|', '>', '<', '(', ')', '{', '}', "'", '"', '\\', ',', ' ', '\t', '\n', '-', '@', ':', '[', ']', '%', '*', '~', '#', '.', 'touch M', 'ssh://', '\x7f', '\x1b']
const text = fc.oneof(tokenText(INJECT, 8), anyText)

describe('ssh names under fuzzing', () => {
  it('validSshHostname agrees with the rule as a regex; validSshUser never accepts a refused metacharacter', () => {
    fc.assert(
      fc.property(text, (s) => {
        expect(validSshHostname(s)).toBe(HOST_RULE.test(s))
        if (validSshUser(s)) {
          expect(s).not.toMatch(/^-|['`";&<>|(){}\x00-\x1f\x7f]|\s-|\\$/)
        }
      }),
      { numRuns: 2000 },
    )
  })

  it('parseSshDestination returns only names the validators accept (or throws USAGE)', () => {
    fc.assert(
      fc.property(text, (s) => {
        const r = typed(() => parseSshDestination(s), ['USAGE'])
        if (!r.ok) return
        expect(validSshHostname(r.value.host)).toBe(true)
        if (r.value.user !== undefined) expect(validSshUser(r.value.user)).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('an accepted host expanded into a ProxyCommand runs nothing in /bin/sh', () => {
    const marker = join(dir, 'M')
    const hosts = tokenText(['$(touch M)', '`touch M`', ';touch M', '|touch M', '&touch M', '\ntouch M', '>M', '$((1))', '${x}', '*', '?', '~', '#', '!', '=', '%', 'a'], 5)
    fc.assert(
      fc.property(hosts, (h) => {
        if (!validSshHostname(h) || h.includes('\0')) return
        const cmd = expandTokens('printf %s %h', { h, '%': '%' })
        execFileSync('/bin/sh', ['-c', `exec ${cmd}`], { cwd: dir, stdio: 'ignore' })
        expect(existsSync(marker)).toBe(false)
      }),
      { numRuns: 300 },
    )
  })
})
