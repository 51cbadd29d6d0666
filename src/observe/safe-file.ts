/**
 * Opening a file the user named (--audit-log, --pidfile) the way a root process must open paths
 * in directories other users may write (/tmp, a home directory):
 *
 * - never through a symbolic link: O_NOFOLLOW on the last component, so `ln -s /etc/shadow
 *   /tmp/audit.jsonl` fails with ELOOP instead of making root append to (and chmod) the target;
 * - never blocking on a FIFO someone planted there: O_NONBLOCK (no effect on regular files);
 * - then checked on the descriptor, not the name (fstat, no race with a rename): a regular file,
 *   owned by our effective uid, with exactly one link — a second hard link would be a name
 *   someone else chose for our data, and a file another user made first may be read by them.
 */
import { constants } from 'node:fs'
import { errorMessage } from '../errors'

/** Extra open(2) flags for every such file. */
export const SAFE_OPEN_FLAGS = constants.O_NOFOLLOW | constants.O_NONBLOCK

/** The fields of fs.Stats that the check reads. */
export interface FileFacts {
  isFile(): boolean
  readonly uid: number
  readonly nlink: number
}

/** Our effective uid; undefined where there are no uids (Windows). */
export function effectiveUid(): number | undefined {
  return process.geteuid?.()
}

/** Why an opened (or lstat'ed) file must not be written by us, or undefined when it is fine. */
export function unsafeFileReason(st: FileFacts, uid: number | undefined = effectiveUid()): string | undefined {
  if (!st.isFile()) return 'not a regular file'
  if (uid !== undefined && st.uid !== uid) return `owned by uid ${st.uid}, not by us (uid ${uid})`
  if (st.nlink !== 1) return `has ${st.nlink} hard links (another name points at the same file)`
  return undefined
}

/** A readable reason for an open(2) failure under SAFE_OPEN_FLAGS. */
export function openFailureReason(e: unknown): string {
  switch ((e as NodeJS.ErrnoException).code) {
    case 'ELOOP': // Linux, macOS: O_NOFOLLOW met a symlink
    case 'EMLINK': // FreeBSD says EMLINK for the same
      return 'is a symbolic link (not followed)'
    case 'ENXIO': // O_NONBLOCK|O_WRONLY on a FIFO without a reader, or a socket
      return 'not a regular file'
    default:
      return errorMessage(e)
  }
}
