import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  globMatch,
  keyTypeForAlgorithm,
  loadKnownHostsFiles,
  lookupHost,
  matchPatternList,
  parseKnownHosts,
} from '../../../src/ssh/builtin/known-hosts'

let dir: string
const keys: Record<string, { blob: Buffer; line: string; fp: string }> = {}

/** A real key pair from ssh-keygen; returns the public blob, the "type base64" text and ssh-keygen's fingerprint. */
function genKey(name: string, type: string): void {
  const f = join(dir, name)
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'test', '-f', f])
  const pub = readFileSync(f + '.pub', 'utf8').trim().split(' ')
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', f + '.pub'], { encoding: 'utf8' }).split(' ')[1]!
  keys[name] = { blob: Buffer.from(pub[1]!, 'base64'), line: `${pub[0]} ${pub[1]}`, fp }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-kh-'))
  genKey('ed', 'ed25519')
  genKey('ed2', 'ed25519')
  genKey('rsa', 'rsa')
  genKey('ec', 'ecdsa')
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('patterns', () => {
  it('globs * and ? like match_pattern()', () => {
    expect(globMatch('db1.corp', '*.corp')).toBe(true)
    expect(globMatch('db1.corp', 'db?.corp')).toBe(true)
    expect(globMatch('db10.corp', 'db?.corp')).toBe(false)
    expect(globMatch('[h]:2222', '[h]:2222')).toBe(true) // brackets are literal
    expect(globMatch('abc', 'a*b*c*')).toBe(true)
    expect(globMatch('abd', 'a*c')).toBe(false)
  })
  it('negation wins over a positive match, case-insensitively', () => {
    expect(matchPatternList('web.corp', '*.corp,!db.corp')).toBe(1)
    expect(matchPatternList('DB.corp', '*.corp,!db.corp')).toBe(-1)
    expect(matchPatternList('other', '*.corp')).toBe(0)
  })
})

describe('parseKnownHosts', () => {
  it('parses markers, comments and keys; reports bad lines without failing', () => {
    const text = [
      '# comment',
      '',
      `host1,host2 ${keys.ed!.line} a comment`,
      `@revoked bad ${keys.rsa!.line}`,
      `@cert-authority *.corp ${keys.ec!.line}`,
      `@weird host ${keys.ed!.line}`,
      `mismatch ssh-rsa ${keys.ed!.line.split(' ')[1]}`,
      'truncated',
      '|1|notbase64|x ssh-ed25519 AAAA',
      `sshone 1024 35 12345`,
    ].join('\n')
    const { entries, problems } = parseKnownHosts(text, 'kh')
    expect(entries.map((e) => [e.line, e.marker, e.keyType])).toEqual([
      [3, undefined, 'ssh-ed25519'],
      [4, 'revoked', 'ssh-rsa'],
      [5, 'cert-authority', keys.ec!.line.split(' ')[0]],
    ])
    expect(entries[0]!.comment).toBe('a comment')
    expect(problems.map((p) => p.line)).toEqual([6, 7, 8, 9, 10])
    expect(problems[1]!.reason).toMatch(/does not match/)
  })

  it('maps rsa-sha2 algorithm names to the ssh-rsa key type', () => {
    expect(keyTypeForAlgorithm('rsa-sha2-512')).toBe('ssh-rsa')
    expect(keyTypeForAlgorithm('ssh-ed25519')).toBe('ssh-ed25519')
    const b64 = keys.rsa!.line.split(' ')[1]
    expect(parseKnownHosts(`h rsa-sha2-256 ${b64}`).entries).toHaveLength(1)
  })

  it('fingerprints like ssh-keygen -l', () => {
    for (const k of Object.values(keys)) expect(fingerprintSha256(k.blob)).toBe(k.fp)
  })
})

describe('lookup and check', () => {
  it('uses [host]:port for non-22 ports and the plain name for 22', () => {
    const { entries } = parseKnownHosts(`[bastion]:2222 ${keys.ed!.line}\nbastion ${keys.ed2!.line}`)
    expect(lookupHost(entries, 'bastion', 2222).map((e) => e.line)).toEqual([1])
    expect(lookupHost(entries, 'BASTION', 22).map((e) => e.line)).toEqual([2])
    expect(checkHostKey(entries, 'bastion', 2222, keys.ed!.blob).status).toBe('match')
    expect(checkHostKey(entries, 'bastion', 22, keys.ed!.blob).status).toBe('mismatch')
  })

  it('matches wildcards and honours negation', () => {
    const { entries } = parseKnownHosts(`*.corp,!evil.corp ${keys.ed!.line}`)
    expect(checkHostKey(entries, 'db.corp', 22, keys.ed!.blob).status).toBe('match')
    expect(checkHostKey(entries, 'evil.corp', 22, keys.ed!.blob).status).toBe('unknown')
  })

  it('matches hashed entries written by ssh-keygen -H', () => {
    const f = join(dir, 'hashed')
    writeFileSync(f, `bastion.example ${keys.ed!.line}\n[bastion.example]:2200 ${keys.rsa!.line}\n`)
    execFileSync('ssh-keygen', ['-q', '-H', '-f', f], { stdio: 'ignore' })
    const text = readFileSync(f, 'utf8')
    expect(text).not.toContain('bastion.example')
    const { entries } = loadKnownHostsFiles([f])
    expect(entries.every((e) => e.hosts.startsWith('|1|'))).toBe(true)
    expect(checkHostKey(entries, 'bastion.example', 22, keys.ed!.blob).status).toBe('match')
    expect(checkHostKey(entries, 'bastion.example', 2200, keys.rsa!.blob).status).toBe('match')
    expect(checkHostKey(entries, 'other.example', 22, keys.ed!.blob).status).toBe('unknown')
  })

  it('reports mismatch with the same-type offender, and for other types too (HOST_CHANGED)', () => {
    const { entries } = parseKnownHosts(`h ${keys.rsa!.line}\nh ${keys.ed!.line}`, 'kh')
    const r = checkHostKey(entries, 'h', 22, keys.ed2!.blob)
    expect(r.status).toBe('mismatch')
    expect(r.entry!.line).toBe(2)
    const other = checkHostKey(parseKnownHosts(`h ${keys.rsa!.line}`).entries, 'h', 22, keys.ed!.blob)
    expect(other.status).toBe('mismatch')
    expect(other.knownTypes).toEqual(['ssh-rsa'])
  })

  it('reports revoked even when a plain line also matches, and ignores cert-authority lines', () => {
    const { entries } = parseKnownHosts(`h ${keys.ed!.line}\n@revoked * ${keys.ed!.line}\n@cert-authority k ${keys.ed2!.line}`)
    expect(checkHostKey(entries, 'h', 22, keys.ed!.blob).status).toBe('revoked')
    expect(checkHostKey(entries, 'k', 22, keys.ed2!.blob).status).toBe('unknown')
  })
})

describe('appendKnownHost', () => {
  it('creates dir 0700 and file 0600, adds a missing newline, and hashes on request', async () => {
    const f = join(dir, 'new', 'sub', 'known_hosts')
    await appendKnownHost(f, 'Bastion', 2222, keys.ed!.blob, false)
    expect(statSync(join(dir, 'new', 'sub')).mode & 0o777).toBe(0o700)
    expect(statSync(f).mode & 0o777).toBe(0o600)
    expect(readFileSync(f, 'utf8')).toBe(`[bastion]:2222 ${keys.ed!.line}\n`)

    const g = join(dir, 'nonl')
    writeFileSync(g, `x ${keys.rsa!.line}`)
    await appendKnownHost(g, 'h', 22, keys.ec!.blob, true)
    const lines = readFileSync(g, 'utf8').split('\n')
    expect(lines[1]).toMatch(/^\|1\|[^|]+\|[^ ]+ ecdsa-sha2-nistp256 /)
    // ssh-keygen -F finds our hashed line, so the format is OpenSSH's.
    const found = execFileSync('ssh-keygen', ['-F', 'h', '-f', g], { encoding: 'utf8' })
    expect(found).toContain('ecdsa-sha2-nistp256')
    expect(checkHostKey(loadKnownHostsFiles([g]).entries, 'h', 22, keys.ec!.blob).status).toBe('match')
  })

  it('treats a missing file as empty', () => {
    expect(loadKnownHostsFiles([join(dir, 'nope')])).toEqual({ entries: [], problems: [] })
  })
})
