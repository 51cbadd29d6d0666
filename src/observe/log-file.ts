/**
 * `--log-file` (and -f's default log): the log lines, with timestamps, appended to a file that
 * stays bounded: past `maxBytes` it becomes FILE.1 (replacing the older one) and a new FILE is
 * started, so at most about twice `maxBytes` is ever kept.
 *
 * A hostile neighbour (DESIGN.md §9) could plant a symlink where we will write, or hand us a
 * file that is also linked elsewhere: the file is opened without following a symlink, must be a
 * regular file of ours with one link, and is created with mode 0600 (it names hosts, subnets
 * and the processes behind connections). Writes are synchronous appends: a log line is small,
 * the rate of warnings is limited (log-limiter.ts), and nothing is lost at exit.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../errors'

/** Default bound before rotation. */
export const LOG_FILE_MAX_BYTES = 1_000_000

export interface LogFileOptions {
  readonly maxBytes?: number
  /** Create the file's directory (mode 0700) when it is missing: -f's default location. */
  readonly makeDir?: boolean
}

export class LogFile {
  private fd: number
  private size: number
  private broken = false

  private constructor(
    readonly path: string,
    private readonly maxBytes: number,
  ) {
    ;({ fd: this.fd, size: this.size } = openSafely(path))
  }

  /** Opens (creates) the file for appending; LOG_FILE with a hint when it is not safely ours. */
  static open(file: string, opts: LogFileOptions = {}): LogFile {
    const abs = path.resolve(file)
    if (opts.makeDir) fs.mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 })
    return new LogFile(abs, opts.maxBytes ?? LOG_FILE_MAX_BYTES)
  }

  /** Appends one line (a newline is added). A write error stops the file, never the tunnel. */
  write(line: string): void {
    if (this.broken) return
    const buf = Buffer.from(line + '\n')
    try {
      if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate()
      fs.writeSync(this.fd, buf)
      this.size += buf.length
    } catch {
      // A full disk or a removed directory: stderr (or nothing, in the background) is all
      // there is to say it on, and the tunnel itself is fine.
      this.broken = true
    }
  }

  close(): void {
    if (this.fd < 0) return
    fs.closeSync(this.fd)
    this.fd = -1
  }

  /** FILE → FILE.1 (rename replaces a planted symlink itself, never its target), then a new FILE. */
  private rotate(): void {
    fs.renameSync(this.path, this.path + '.1')
    fs.closeSync(this.fd)
    ;({ fd: this.fd, size: this.size } = openSafely(this.path))
  }
}

function openSafely(file: string): { fd: number; size: number } {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600)
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ELOOP' ? 'it is a symbolic link' : errorMessage(e)
    throw new TunnelError('LOG_FILE', `--log-file ${file}: cannot open it: ${why}`, { hint: 'give a path in a directory of yours', cause: e })
  }
  const st = fs.fstatSync(fd)
  const uid = process.getuid?.()
  const bad = !st.isFile() ? 'not a regular file' : uid !== undefined && st.uid !== uid ? `owned by uid ${st.uid}, not by you` : st.nlink !== 1 ? 'it has other hard links' : undefined
  if (bad) {
    fs.closeSync(fd)
    throw new TunnelError('LOG_FILE', `--log-file ${file}: ${bad}`, { hint: 'give a path in a directory of yours' })
  }
  // An existing file keeps its mode unless it is readable by others: then it is narrowed.
  if ((st.mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600)
  return { fd, size: st.size }
}
