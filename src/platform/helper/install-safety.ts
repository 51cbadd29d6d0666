/**
 * Is it safe to let a user run the helper as root without a password? A sudoers rule names
 * `<node> <helper-main.js>`; root then runs that node, which loads helper-main.js, the rest of
 * the package's dist/ and its node_modules/ (ipaddr.js), and reads package.json. Whoever can
 * change any of these — or rename any directory above them — chooses the code root runs, so the
 * rule is then plain root for them. A checkout in $HOME, an npm prefix in $HOME or a node from
 * nvm are all like that.
 *
 * The check: every one of those paths, every file and directory under dist/ and node_modules/,
 * and every parent directory up to `/` (of the path as given and of its real path) must be
 * owned by root and writable by no one else: not world-writable, group-writable only by group
 * root, and — when the check runs as the user — not writable by the user at all (access(2) also
 * sees ACLs, which stat cannot). Pure over a small file-system interface, so it is unit-tested
 * with a fake; realSafetyFs() is the real one.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

/** What the check needs to know about one path (lstat: a symlink is not followed). */
export interface SafetyStat {
  readonly uid: number
  readonly gid: number
  readonly mode: number
  readonly isDirectory: boolean
  readonly isSymbolicLink: boolean
}

export interface SafetyFs {
  /** lstat; throws (ENOENT) for a missing path. */
  lstat(p: string): SafetyStat
  realpath(p: string): string
  readdir(p: string): string[]
  /**
   * Whether the user running the check may write p (access W_OK). Leave it out when running
   * as root, for whom it is always true.
   */
  writable?(p: string): boolean
}

/** The installation to check. */
export interface InstallPaths {
  /** The node binary (process.execPath). */
  readonly execPath: string
  /** dist/platform/helper/helper-main.js */
  readonly helperPath: string
  /** The package root: holds package.json, dist/ and node_modules/. */
  readonly packageRoot: string
}

export type SafetyVerdict = { readonly safe: true } | { readonly safe: false; readonly path: string; readonly reason: string }

/** Why one path is unsafe, or undefined. */
function unsafeReason(p: string, st: SafetyStat, sfs: SafetyFs): string | undefined {
  if (st.uid !== 0) return `is owned by uid ${st.uid}, not root`
  // A symlink's own mode bits mean nothing; its owner and its directory's do.
  if (st.isSymbolicLink) return undefined
  if ((st.mode & 0o002) !== 0) return 'is writable by everyone'
  if ((st.mode & 0o020) !== 0 && st.gid !== 0) return `is writable by group ${st.gid}`
  if (sfs.writable?.(p) === true) return 'is writable by you (an ACL?)'
  return undefined
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e)
}

/** `/a/b/c` → ['/', '/a', '/a/b', '/a/b/c'] */
function prefixes(p: string): string[] {
  const out = ['/']
  let cur = '/'
  for (const part of path.resolve(p).split('/').filter(Boolean)) {
    cur = path.join(cur, part)
    out.push(cur)
  }
  return out
}

class Walk {
  private readonly seen = new Set<string>()

  constructor(private readonly sfs: SafetyFs) {}

  /** Checks one path (memoised); returns its stat when it is safe. */
  private one(p: string): SafetyVerdict & { st?: SafetyStat } {
    let st: SafetyStat
    try {
      st = this.sfs.lstat(p)
    } catch (e) {
      return { safe: false, path: p, reason: `cannot be checked (${errCode(e)})` }
    }
    if (this.seen.has(p)) return { safe: true, st }
    this.seen.add(p)
    const reason = unsafeReason(p, st, this.sfs)
    return reason === undefined ? { safe: true, st } : { safe: false, path: p, reason }
  }

  /** p and every parent, as given and as resolved (a symlink on the way points elsewhere). */
  chain(p: string): SafetyVerdict {
    let real: string
    try {
      real = this.sfs.realpath(p)
    } catch (e) {
      return { safe: false, path: p, reason: `cannot be resolved (${errCode(e)})` }
    }
    for (const q of [...prefixes(p), ...prefixes(real)]) {
      const v = this.one(q)
      if (!v.safe) return v
    }
    return { safe: true }
  }

  /** dir's chain, then everything below it (symlinks: their targets' chains and trees too). */
  tree(dir: string): SafetyVerdict {
    const head = this.chain(dir)
    if (!head.safe) return head
    const stack = [this.sfs.realpath(dir)]
    const visited = new Set<string>()
    while (stack.length > 0) {
      const d = stack.pop()!
      if (visited.has(d)) continue
      visited.add(d)
      let names: string[]
      try {
        names = this.sfs.readdir(d).sort()
      } catch (e) {
        return { safe: false, path: d, reason: `cannot be listed (${errCode(e)})` }
      }
      for (const name of names) {
        const p = path.join(d, name)
        const v = this.one(p)
        if (!v.safe) return v
        const st = v.st!
        if (st.isSymbolicLink) {
          const target = this.chain(p)
          if (!target.safe) return target
          let real: string
          try {
            real = this.sfs.realpath(p)
          } catch {
            continue // dangling: nothing to load
          }
          if (this.one(real).st?.isDirectory === true) stack.push(real)
        } else if (st.isDirectory) {
          stack.push(p)
        }
      }
    }
    return { safe: true }
  }
}

/** The first path that makes a NOPASSWD rule for the helper unsafe, with the reason. */
export function checkInstallSafety(paths: InstallPaths, sfs: SafetyFs): SafetyVerdict {
  const w = new Walk(sfs)
  const checks: Array<() => SafetyVerdict> = [
    () => w.chain(paths.execPath),
    () => w.chain(paths.helperPath),
    () => w.chain(path.join(paths.packageRoot, 'package.json')),
    () => w.tree(path.join(paths.packageRoot, 'dist')),
    () => {
      const nm = path.join(paths.packageRoot, 'node_modules')
      try {
        sfs.lstat(nm)
      } catch {
        return { safe: true } // no dependencies installed beside it: nothing to load from there
      }
      return w.tree(nm)
    },
  ]
  for (const check of checks) {
    const v = check()
    if (!v.safe) return v
  }
  return { safe: true }
}

/** The real file system; `writable` only when not root (root may write anything). */
export function realSafetyFs(uid: number | undefined = process.getuid?.()): SafetyFs {
  return {
    lstat(p) {
      const st = fs.lstatSync(p)
      return { uid: st.uid, gid: st.gid, mode: st.mode, isDirectory: st.isDirectory(), isSymbolicLink: st.isSymbolicLink() }
    },
    realpath: (p) => fs.realpathSync(p),
    readdir: (p) => fs.readdirSync(p),
    ...(uid !== 0 && {
      writable(p: string): boolean {
        try {
          fs.accessSync(p, fs.constants.W_OK)
          return true
        } catch {
          return false
        }
      },
    }),
  }
}

/** What to do instead of a NOPASSWD rule on an unsafe install (one line). */
export const SAFE_INSTALL_HINT =
  'install it root-owned (`npm pack`, then `sudo npm install -g ./subnet-tunnel-*.tgz` with a root-owned node) and use that copy, or run subnet-tunnel with sudo'
