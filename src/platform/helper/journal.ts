/**
 * The state journal: one JSON file per live instance, written BEFORE any rule is applied and
 * removed after a successful revert. A helper that dies without reverting (SIGKILL, OOM) leaves
 * its file behind, and the next start or `subnet-tunnel cleanup` uses it to remove the rules.
 *
 * Network namespaces share the filesystem (`ip netns exec` keeps /run), so every entry records
 * the namespace it belongs to and cleanup only touches entries of its own namespace.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../../errors'
import { isScopeRecord } from '../firewall/capture-scope'
import { INSTANCE_ID_RE } from '../firewall/naming'
import { isMethodName, type InstanceRecord, type MethodName } from '../firewall/types'

export const DEFAULT_STATE_DIR = '/run/subnet-tunnel'

/**
 * One instance's record. `revert` is informational: cleanup recomputes it with the backend's
 * revert() from method and the InstanceRecord fields (id, families, the scope: gateway
 * interfaces and sources, owner uid, DNS guard — each absent in entries written before it
 * existed, which means none — and pf's token).
 */
export interface JournalEntry extends InstanceRecord {
  readonly id: string
  readonly helperPid: number
  /** starttime of the helper (field 22 of /proc/<pid>/stat), to detect pid reuse. */
  readonly helperStart: string
  readonly mainPid: number
  /** Inode of /proc/self/ns/net of the helper. */
  readonly netns: number
  readonly method: MethodName
  readonly families: Array<4 | 6>
  /**
   * pf only: written right after apply (the token exists only then); cleanup releases it with
   * `pfctl -X`. Absent until then, or when the token was never taken.
   */
  readonly pfToken?: string
  readonly revert: string[][]
  readonly createdAt: string
}

/**
 * State directory: $SUBNET_TUNNEL_STATE_DIR or /run/subnet-tunnel. Under sudo (SUDO_UID set) the
 * variable is ignored: it would come from the unprivileged caller (a sudoers `env_keep` or
 * `sudo -E`), who must not choose where root writes, or which directory root makes 0700.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const d = env.SUDO_UID === undefined ? env.SUBNET_TUNNEL_STATE_DIR : undefined
  // macOS: / is a read-only system volume (no /run); /var/run is its run-time directory.
  return d && d.trim() !== '' ? path.resolve(d) : platform === 'darwin' ? '/var/run/subnet-tunnel' : DEFAULT_STATE_DIR
}

/** Inode of this process's network namespace (unique per namespace on one kernel); 0 without namespaces (macOS). */
export function currentNetns(): number {
  if (process.platform !== 'linux') return 0
  return fs.statSync('/proc/self/ns/net').ino
}

/** starttime (clock ticks since boot) of a process, or undefined when it does not exist. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // comm (field 2) may contain spaces and ')': fields are counted after the LAST ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return rest[19] // field 22 overall = index 19 after state (field 3)
  } catch {
    return undefined
  }
}

/** Whether pid is alive AND still the same process (same starttime, when one is given). */
export function isProcessAlive(pid: number, startTime?: string): boolean {
  try {
    process.kill(pid, 0)
  } catch (e) {
    // EPERM: exists but is not ours to signal — alive.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // A zombie has exited: it only waits for a parent to reap it (a helper whose main process
  // was killed can sit like that under a parent that does not reap), so its rules are orphans.
  if (processState(pid) === 'Z') return false
  if (startTime === undefined) return true
  const now = processStartTime(pid)
  return now === undefined || now === startTime
}

/** The state letter of /proc/PID/stat (R, S, D, Z, …), undefined when it cannot be read. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return undefined
  }
}

function isEntry(v: unknown): v is JournalEntry {
  const e = v as Record<string, unknown>
  return typeof e === 'object' && e !== null &&
    typeof e.id === 'string' && INSTANCE_ID_RE.test(e.id) &&
    Number.isInteger(e.helperPid) && Number.isInteger(e.mainPid) && Number.isInteger(e.netns) &&
    typeof e.helperStart === 'string' && isMethodName(e.method) &&
    (e.pfToken === undefined || (typeof e.pfToken === 'string' && /^\d{1,20}$/.test(e.pfToken))) &&
    Array.isArray(e.families) && e.families.every((f) => f === 4 || f === 6) &&
    isScopeRecord(e) &&
    Array.isArray(e.revert) && typeof e.createdAt === 'string'
}

/**
 * A --fail-closed guard (fail-closed.ts): a file of its own, `<id>.guard.json`, because it
 * outlives its instance on purpose — the helper's exit and the start-up sweep leave it, only an
 * explicit `subnet-tunnel cleanup` removes it (when its instance is no longer alive).
 */
export interface GuardEntry {
  readonly id: string
  readonly helperPid: number
  readonly helperStart: string
  readonly mainPid: number
  readonly netns: number
  readonly families: Array<4 | 6>
  readonly ownerUid?: number
  readonly createdAt: string
}

function isGuardEntry(v: unknown): v is GuardEntry {
  const e = v as Record<string, unknown>
  return typeof e === 'object' && e !== null &&
    typeof e.id === 'string' && INSTANCE_ID_RE.test(e.id) &&
    Number.isInteger(e.helperPid) && Number.isInteger(e.mainPid) && Number.isInteger(e.netns) &&
    typeof e.helperStart === 'string' && typeof e.createdAt === 'string' &&
    Array.isArray(e.families) && e.families.length > 0 && e.families.every((f) => f === 4 || f === 6) &&
    (e.ownerUid === undefined || (Number.isInteger(e.ownerUid) && (e.ownerUid as number) >= 0 && (e.ownerUid as number) <= 2 ** 32 - 2))
}

/** A journal file that could be read, or the reason it could not. */
export type JournalRead = { file: string; entry: JournalEntry } | { file: string; error: string }

/** The journal directory. All I/O is synchronous: it is tiny and runs in the helper only. */
export class Journal {
  constructor(readonly dir: string = stateDir()) {}

  /** Creates the directory 0700 and refuses one that is a symlink or owned by someone else. */
  private ensureDir(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const st = fs.lstatSync(this.dir)
    const uid = process.getuid?.()
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
      throw new TunnelError('HELPER', `state directory ${this.dir} is not a directory owned by uid ${uid}`, {
        hint: `remove ${this.dir} or set SUBNET_TUNNEL_STATE_DIR`,
      })
    }
    if ((st.mode & 0o077) !== 0) fs.chmodSync(this.dir, 0o700)
  }

  fileOf(id: string): string {
    if (!INSTANCE_ID_RE.test(id)) throw new TunnelError('INTERNAL', `invalid instance id "${id}"`)
    return path.join(this.dir, `${id}.json`)
  }

  /** Replaces an entry of ours atomically (temp file + rename), mode 0600. */
  write(entry: JournalEntry): void {
    this.ensureDir()
    const file = this.fileOf(entry.id)
    const tmp = this.writeTemp(file, entry)
    fs.renameSync(tmp, file)
  }

  /**
   * Creates the entry of a NEW instance, atomically and exclusively: written to a temp file,
   * then hard-linked to its name. link(2) fails with EEXIST when the name exists, so of two
   * helpers given the same id exactly one gets it, however their steps interleave (a separate
   * exists-check followed by write let both pass, and the loser's failed apply then reverted
   * the winner's objects); and no reader ever sees a half-written entry.
   * Throws HELPER "instance id … is already in use" when the entry exists.
   */
  create(entry: JournalEntry): void {
    this.ensureDir()
    const file = this.fileOf(entry.id)
    const tmp = this.writeTemp(file, entry)
    try {
      fs.linkSync(tmp, file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      throw new TunnelError('HELPER', `instance id ${entry.id} is already in use`, { hint: 'start again: instance ids are random' })
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  }

  private writeTemp(file: string, entry: JournalEntry): string {
    const tmp = `${file}.${process.pid}.tmp`
    fs.writeFileSync(tmp, JSON.stringify(entry) + '\n', { mode: 0o600, flag: 'w' })
    return tmp
  }

  /** Removes an entry; a missing file is fine (revert is idempotent). */
  remove(id: string): void {
    try {
      fs.unlinkSync(this.fileOf(id))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    }
  }

  /** Writes (replaces) the guard entry of an instance, mode 0600, before the guard exists. */
  writeGuard(entry: GuardEntry): void {
    this.ensureDir()
    const file = this.guardFileOf(entry.id)
    const tmp = `${file}.${process.pid}.tmp`
    fs.writeFileSync(tmp, JSON.stringify(entry) + '\n', { mode: 0o600, flag: 'w' })
    fs.renameSync(tmp, file)
  }

  removeGuard(id: string): void {
    fs.rmSync(this.guardFileOf(id), { force: true })
  }

  private guardFileOf(id: string): string {
    if (!INSTANCE_ID_RE.test(id)) throw new TunnelError('INTERNAL', `invalid instance id "${id}"`)
    return path.join(this.dir, `${id}.guard.json`)
  }

  /** Every `<id>.guard.json`; malformed files are reported. */
  listGuards(): Array<{ file: string; entry: GuardEntry } | { file: string; error: string }> {
    return this.readAll(/^([a-z0-9]{1,16})\.guard\.json$/, isGuardEntry, 'malformed guard entry')
  }

  /** Every `<id>.json` in the directory; unreadable or malformed files are reported, not thrown. */
  list(): JournalRead[] {
    return this.readAll(/^([a-z0-9]{1,16})\.json$/, isEntry, 'malformed entry')
  }

  /** The files whose names match `re` (group 1: the id), parsed and checked; errors reported, not thrown. */
  private readAll<T extends { id: string }>(re: RegExp, ok: (v: unknown) => v is T, malformed: string): Array<{ file: string; entry: T } | { file: string; error: string }> {
    let names: string[]
    try {
      names = fs.readdirSync(this.dir)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw e
    }
    const out: Array<{ file: string; entry: T } | { file: string; error: string }> = []
    for (const name of names.sort()) {
      const m = re.exec(name)
      if (!m) continue
      const file = path.join(this.dir, name)
      try {
        const v: unknown = JSON.parse(fs.readFileSync(file, 'utf8'))
        if (ok(v) && v.id === m[1]) out.push({ file, entry: v })
        else out.push({ file, error: malformed })
      } catch (e) {
        out.push({ file, error: errorMessage(e) })
      }
    }
    return out
  }

}
