/**
 * exec --only: which process the helper may move into the capture's cgroup. Only a process of
 * the caller (the sudo caller; anyone's when root started us) whose parent is the tunnel itself,
 * an ancestor of this helper. So a `cgroup-add` request can only narrow the capture to the
 * tunnel's own command: it cannot pull another user's process, or an unrelated one of the
 * caller's, into a capture.
 */
import { TunnelError } from '../../errors'
import { processIds as realProcessIds } from '../os/cgroup'

export interface CgroupGrantOptions {
  readonly callerUid?: number
  /** A process's uid and parent (tests); default: /proc. */
  readonly processIds?: (pid: number) => { uid: number; ppid: number } | undefined
  /** This helper's ancestors (tests); default: walked up /proc. */
  readonly ancestors?: () => number[]
}

/** Throws HELPER unless `pid` may be moved into the cgroup. */
export function checkCgroupAdd(pid: number, o: CgroupGrantOptions): void {
  const p = (o.processIds ?? realProcessIds)(pid)
  if (!p) throw new TunnelError('HELPER', `cgroup-add: no process ${pid}`)
  if (o.callerUid !== undefined && p.uid !== o.callerUid) throw new TunnelError('HELPER', `cgroup-add: process ${pid} is not the caller's`)
  if (!(o.ancestors ?? helperAncestors)().includes(p.ppid)) {
    throw new TunnelError('HELPER', `cgroup-add: process ${pid} was not started by the tunnel`)
  }
}

/** This helper's ancestors (parent, its parent, … up to init): the tunnel and sudo among them. */
export function helperAncestors(): number[] {
  const out: number[] = []
  let pid = process.ppid
  while (pid > 1 && out.length < 16) {
    out.push(pid)
    const p = realProcessIds(pid)
    if (!p) break
    pid = p.ppid
  }
  return out
}
