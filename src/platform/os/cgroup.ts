/**
 * `exec --only`: a cgroup v2 of our own holds the command and its children, so the kernel rules
 * capture their sockets alone (nft `socket cgroupv2`, iptables `-m cgroup --path`). The helper
 * (root) creates it, moves the command into it and removes it.
 *
 * Security: the directory is root's, 0755, so its cgroup.procs (root's, 0644) takes no process
 * from anyone but root — another local user cannot put a process into our capture; the helper
 * moves only a process of the caller that the tunnel itself started (see HelperServer). On
 * removal the processes still inside are killed (cgroup.kill, or SIGKILL each): moved out they
 * would reach the captured networks uncaptured, in the clear.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../../errors'

/**
 * `subnet-tunnel-<id>`, one level below the root (hence `level 1` in nft). The same pattern as
 * firewall/capture-scope.ts checks in specs (os/ and firewall/ do not import each other).
 */
export const CGROUP_NAME_RE = /^subnet-tunnel-[a-z0-9]{1,16}$/
const INSTANCE_ID_RE = /^[a-z0-9]{1,16}$/

export function cgroupName(instanceId: string): string {
  if (!INSTANCE_ID_RE.test(instanceId)) throw new TunnelError('INTERNAL', `invalid instance id "${instanceId}"`)
  return `subnet-tunnel-${instanceId}`
}

/** Where the cgroup v2 hierarchy is mounted (mountinfo field 5 of the first cgroup2 line), if anywhere. */
export function cgroup2Root(mountinfo?: string): string | undefined {
  let text = mountinfo
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/mountinfo', 'utf8')
    } catch {
      return undefined
    }
  }
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ')
    if (post?.split(' ')[0] === 'cgroup2') return pre!.split(' ')[4]?.replace(/\\040/g, ' ')
  }
  return undefined
}

function dirOf(root: string, name: string): string {
  if (!CGROUP_NAME_RE.test(name)) throw new TunnelError('INTERNAL', `invalid cgroup name "${name}"`)
  return path.join(root, name)
}

/** Creates the cgroup (never reuses one that exists) and checks it is root's own directory. */
export function createCgroup(root: string, name: string): void {
  const dir = dirOf(root, name)
  try {
    fs.mkdirSync(dir, { mode: 0o755 })
  } catch (e) {
    throw new TunnelError('FW_APPLY', `cgroup ${dir}: ${errorMessage(e)}`, {
      hint: (e as NodeJS.ErrnoException).code === 'EEXIST' ? 'a dead instance left it: run `sudo subnet-tunnel cleanup`' : 'exec --only needs a writable cgroup v2 hierarchy',
    })
  }
  const st = fs.lstatSync(dir)
  if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0)) throw new TunnelError('FW_APPLY', `cgroup ${dir} is not our own directory`)
  // cgroup.procs must not be writable by anyone else, whatever the mount's defaults.
  const procs = path.join(dir, 'cgroup.procs')
  if ((fs.statSync(procs).mode & 0o022) !== 0) fs.chmodSync(procs, 0o644)
}

/** Moves a process into the cgroup (its children follow it from then on). */
export function addToCgroup(root: string, name: string, pid: number): void {
  fs.writeFileSync(path.join(dirOf(root, name), 'cgroup.procs'), String(pid))
}

/** Pids in the cgroup now. */
export function cgroupPids(root: string, name: string): number[] {
  try {
    return fs.readFileSync(path.join(dirOf(root, name), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/**
 * Kills what is left inside and removes the cgroup; a missing one is fine. Returns how many
 * processes had to be killed. Throws when it cannot be removed within `waitMs`.
 */
export async function removeCgroup(root: string, name: string, waitMs = 3000): Promise<number> {
  const dir = dirOf(root, name)
  if (!fs.existsSync(dir)) return 0
  const left = cgroupPids(root, name)
  if (left.length > 0) {
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1') // Linux 5.14+: atomic, forks included
    } catch {
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
    }
  }
  const deadline = Date.now() + waitMs
  for (;;) {
    try {
      fs.rmdirSync(dir)
      return left.length
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return left.length
      if (code !== 'EBUSY' || Date.now() > deadline) throw new TunnelError('FW_APPLY', `cgroup ${dir}: ${errorMessage(e)}`)
      // A fork that raced the kill: kill again.
      for (const pid of cgroupPids(root, name)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

/** uid and parent pid of a process (from /proc), or undefined when it is gone. */
export function processIds(pid: number): { uid: number; ppid: number } | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const uid = /^Uid:\s+(\d+)/m.exec(status)
    const ppid = /^PPid:\s+(\d+)/m.exec(status)
    if (!uid || !ppid) return undefined
    return { uid: Number(uid[1]), ppid: Number(ppid[1]) }
  } catch {
    return undefined
  }
}
