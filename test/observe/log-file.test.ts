import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { rememberProblems } from '../../src/observe/last-problem'
import { LogFile } from '../../src/observe/log-file'
import { memoryLogger } from '../../src/observe/logger'

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-logfile-'))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe('LogFile', () => {
  it('appends lines to a 0600 file, creating its directory (0700) when asked', () => {
    const file = path.join(dir, 'state', 'subnet-tunnel', 'work.log')
    const f = LogFile.open(file, { makeDir: true })
    f.write('one')
    f.write('two')
    f.close()
    expect(fs.readFileSync(file, 'utf8')).toBe('one\ntwo\n')
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700)
    // Reopened: appends; a file readable by others is narrowed to 0600.
    fs.chmodSync(file, 0o644)
    const g = LogFile.open(file)
    g.write('three')
    g.close()
    expect(fs.readFileSync(file, 'utf8')).toBe('one\ntwo\nthree\n')
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
  })

  it('stays bounded: past maxBytes the file becomes FILE.1 and a new one starts', () => {
    const file = path.join(dir, 'x.log')
    const f = LogFile.open(file, { maxBytes: 100 })
    for (let i = 0; i < 30; i++) f.write(`line ${String(i).padStart(2, '0')} ${'x'.repeat(20)}`)
    f.close()
    const cur = fs.readFileSync(file, 'utf8')
    const old = fs.readFileSync(file + '.1', 'utf8')
    expect(cur.length).toBeLessThanOrEqual(100)
    expect(old.length).toBeLessThanOrEqual(100)
    expect(cur.trim().split('\n').pop()).toMatch(/^line 29 /)
    expect(old.trim().split('\n').pop()).toBe(`line ${String(29 - cur.trim().split('\n').length).padStart(2, '0')} ${'x'.repeat(20)}`)
  })

  it('refuses a symlink, a hard-linked file and a directory', () => {
    const target = path.join(dir, 'victim')
    fs.writeFileSync(target, 'keep')
    fs.symlinkSync(target, path.join(dir, 'link.log'))
    expect(() => LogFile.open(path.join(dir, 'link.log'))).toThrow(expect.objectContaining({ code: 'LOG_FILE', message: expect.stringContaining('symbolic link') }))
    fs.linkSync(target, path.join(dir, 'hard.log'))
    expect(() => LogFile.open(path.join(dir, 'hard.log'))).toThrow(/other hard links/)
    expect(() => LogFile.open(dir)).toThrow(expect.objectContaining({ code: 'LOG_FILE' }))
    expect(fs.readFileSync(target, 'utf8')).toBe('keep')
  })
})

describe('rememberProblems', () => {
  it('keeps the newest warning or error, not info lines, and still logs everything', () => {
    const mem = memoryLogger('info')
    let t = Date.parse('2024-05-01T10:00:00Z')
    const log = rememberProblems(mem, () => new Date(t))
    expect(log.lastProblem()).toBeUndefined()
    log.warn('ssh', 'connection lost')
    t += 1000
    log.error('dns', 'no resolver')
    log.info('cli', 'fine')
    expect(log.lastProblem()).toEqual({ at: '2024-05-01T10:00:01.000Z', message: '[dns] no resolver' })
    expect(mem.lines).toEqual(['[ssh] warning: connection lost', '[dns] error: no resolver', '[cli] fine'])
  })
})
