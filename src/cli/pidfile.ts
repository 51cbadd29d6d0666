/**
 * --pidfile FILE, written so that root cannot be turned against another file:
 *
 * - the pid goes into a new file with a random name in the same directory (O_CREAT|O_EXCL|
 *   O_NOFOLLOW: no name someone prepared, no symlink), which is then renamed over FILE —
 *   rename(2) replaces a name, it never writes through a symlink or into another file;
 * - an existing FILE must be a regular file of ours with one link (safe-file.ts), so a stale
 *   pidfile of ours is replaced, anything else is refused and left alone;
 * - a directory that other users can write and that lacks the sticky bit is refused: anyone
 *   could replace our pidfile there, and whoever kills "the pid in the file" would be fooled;
 * - at exit the file is removed only if it is still the one we wrote (same inode, our pid).
 */
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../errors'
import { SAFE_OPEN_FLAGS, openFailureReason, unsafeFileReason } from '../observe/safe-file'
import { shellQuote } from '../observe/shell-quote'

/** S_ISVTX, which node's fs.constants does not export. */
const STICKY = 0o1000

export interface Pidfile {
  readonly path: string
  /** Removes the file if it is still ours; never throws. */
  remove(): void
}

/** Writes `${pid}\n` to file as described above; throws PIDFILE with a hint. */
export function writePidfile(file: string, pid: number = process.pid): Pidfile {
  const abs = path.resolve(file)
  const dir = path.dirname(abs)
  const fail = (why: string, hint: string, cause?: unknown): TunnelError =>
    new TunnelError('PIDFILE', `pidfile ${abs}: ${why}`, { hint, cause })
  const otherPath = 'choose a path in a directory only you (or root) can write, e.g. /run/subnet-tunnel.pid'

  let dirSt: fs.Stats
  try {
    dirSt = fs.statSync(dir)
  } catch (e) {
    throw fail(`directory ${dir}: ${errorMessage(e)}`, 'create the directory first, or choose another path', e)
  }
  if (!dirSt.isDirectory()) throw fail(`${dir} is not a directory`, otherPath)
  if ((dirSt.mode & 0o022) !== 0 && (dirSt.mode & STICKY) === 0) {
    throw fail(`directory ${dir} is writable by other users and not sticky: they could replace the pidfile`, otherPath)
  }

  let old: fs.Stats | undefined
  try {
    old = fs.lstatSync(abs)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fail(errorMessage(e), otherPath, e)
  }
  if (old) {
    const why = old.isSymbolicLink() ? 'is a symbolic link' : unsafeFileReason(old)
    if (why) throw fail(`${why}; left alone`, `remove it (rm ${shellQuote(abs)}) if it is stale, or ${otherPath}`)
  }

  const tmp = path.join(dir, `.${path.basename(abs)}.${randomBytes(8).toString('hex')}.tmp`)
  let fd: number
  try {
    fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | SAFE_OPEN_FLAGS, 0o644)
  } catch (e) {
    throw fail(`cannot create a file in ${dir}: ${openFailureReason(e)}`, otherPath, e)
  }
  let ino: number
  try {
    fs.writeSync(fd, `${pid}\n`)
    ino = fs.fstatSync(fd).ino
    fs.closeSync(fd)
    fs.renameSync(tmp, abs)
  } catch (e) {
    try {
      fs.closeSync(fd)
    } catch {
      /* closed already */
    }
    fs.rmSync(tmp, { force: true })
    throw fail(errorMessage(e), otherPath, e)
  }
  return { path: abs, remove: () => removeIfOurs(abs, ino, pid) }
}

/** Unlinks abs only while it is the file we wrote: same inode, still holding our pid. */
function removeIfOurs(abs: string, ino: number, pid: number): void {
  try {
    const st = fs.lstatSync(abs)
    if (!st.isFile() || st.ino !== ino) return
    const fd = fs.openSync(abs, fs.constants.O_RDONLY | SAFE_OPEN_FLAGS)
    let text: string
    try {
      text = fs.readFileSync(fd, 'utf8')
    } finally {
      fs.closeSync(fd)
    }
    if (text === `${pid}\n`) fs.unlinkSync(abs)
  } catch {
    // gone already, or replaced: not ours to remove
  }
}
