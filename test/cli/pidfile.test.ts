import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writePidfile } from '../../src/cli/pidfile'

// Real files in a temp directory. The foreign-owner case needs root (chown to uid 65534); the
// unit project runs as root in CI and skips it elsewhere.
const asRoot = process.getuid?.() === 0
const OTHER_UID = 65534

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-pidfile-'))
})
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

function leftovers(): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))
}

describe('writePidfile', () => {
  it('writes the pid, leaves no temporary file, and removes the file at exit', () => {
    const file = path.join(dir, 'st.pid')
    const pf = writePidfile(file, 4242)
    expect(fs.readFileSync(file, 'utf8')).toBe('4242\n')
    expect(fs.lstatSync(file).isFile()).toBe(true)
    expect(leftovers()).toEqual([])
    pf.remove()
    expect(fs.existsSync(file)).toBe(false)
  })

  it('replaces a stale pidfile of ours', () => {
    const file = path.join(dir, 'st.pid')
    fs.writeFileSync(file, '1\n')
    writePidfile(file, 77)
    expect(fs.readFileSync(file, 'utf8')).toBe('77\n')
  })

  it('refuses a symlink at the path and never writes through it', () => {
    const victim = path.join(dir, 'victim')
    fs.writeFileSync(victim, 'precious\n', { mode: 0o640 })
    const file = path.join(dir, 'st.pid')
    fs.symlinkSync(victim, file)
    expect(() => writePidfile(file, 4242)).toThrow(expect.objectContaining({ code: 'PIDFILE', message: expect.stringMatching(/symbolic link/) }))
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n')
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true)
    expect(leftovers()).toEqual([])
  })

  it('refuses a file with a second hard link (the other name keeps its content)', () => {
    const other = path.join(dir, 'other')
    fs.writeFileSync(other, 'keep\n')
    const file = path.join(dir, 'st.pid')
    fs.linkSync(other, file)
    expect(() => writePidfile(file, 4242)).toThrow(expect.objectContaining({ code: 'PIDFILE', message: expect.stringMatching(/hard links/) }))
    expect(fs.readFileSync(other, 'utf8')).toBe('keep\n')
  })

  it('refuses a directory that others can write without the sticky bit', () => {
    const open = path.join(dir, 'open')
    fs.mkdirSync(open)
    fs.chmodSync(open, 0o777)
    const file = path.join(open, 'st.pid')
    expect(() => writePidfile(file, 4242)).toThrow(expect.objectContaining({ code: 'PIDFILE', message: expect.stringMatching(/not sticky/) }))
    expect(fs.existsSync(file)).toBe(false)
    // The same directory with the sticky bit (like /tmp) is fine.
    fs.chmodSync(open, 0o1777)
    writePidfile(file, 4242).remove()
  })

  it('fails with PIDFILE and a hint when the directory does not exist', () => {
    let err: unknown
    try {
      writePidfile(path.join(dir, 'missing', 'st.pid'))
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'PIDFILE', hint: expect.stringMatching(/create the directory/) })
  })

  it.skipIf(!asRoot)("refuses (as root) a file that another user created first, and leaves it alone", () => {
    const file = path.join(dir, 'st.pid')
    fs.writeFileSync(file, '999\n', { mode: 0o644 })
    fs.chownSync(file, OTHER_UID, OTHER_UID)
    expect(() => writePidfile(file, 4242)).toThrow(expect.objectContaining({ code: 'PIDFILE', message: expect.stringMatching(/owned by uid 65534/) }))
    expect(fs.readFileSync(file, 'utf8')).toBe('999\n')
    expect(fs.statSync(file).uid).toBe(OTHER_UID)
  })

  it('removes the file at exit only while it is still ours', () => {
    const file = path.join(dir, 'st.pid')
    // Replaced by another file (another instance, or someone else's) after we wrote it — even
    // one holding the same text: it is another inode.
    const a = writePidfile(file, 4242)
    fs.writeFileSync(path.join(dir, 'new'), '4242\n')
    fs.renameSync(path.join(dir, 'new'), file)
    a.remove()
    expect(fs.readFileSync(file, 'utf8')).toBe('4242\n')
    fs.rmSync(file)
    // Ours, but rewritten with another pid: no longer ours to remove.
    const b = writePidfile(file, 4243)
    fs.writeFileSync(file, '5\n')
    b.remove()
    expect(fs.readFileSync(file, 'utf8')).toBe('5\n')
    // A symlink in its place is not followed, and not removed.
    fs.rmSync(file)
    const c = writePidfile(file, 4244)
    const target = path.join(dir, 'target')
    fs.writeFileSync(target, '4244\n')
    fs.rmSync(file)
    fs.symlinkSync(target, file)
    c.remove()
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true)
    expect(fs.existsSync(target)).toBe(true)
  })
})
