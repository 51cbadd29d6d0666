/**
 * Removal of what dead instances left behind, in this network namespace only:
 *  1. journal entries whose helper is dead (pid gone, or reused: starttime differs) → revert + delete;
 *  2. a safety net: kernel objects named `subnet-tunnel-*` that no live journal entry owns.
 *
 * Security: the revert argv stored in a journal file is never executed. Its backend rebuilds it
 * from the entry's id, families and scope (Firewall.revert), so a forged file can at most make
 * us delete objects named `subnet-tunnel-<id>` and the jumps into them (tun: the device
 * `st<id>` and the id's routing table).
 */
import { errorMessage } from '../../errors'
import { backendsOn, firewallFor } from '../firewall/choose-method'
import { revertSteps } from '../firewall/executor'
import { cgroup2Root, removeCgroup } from '../os/cgroup'
import { GUARD_SCAN_ARGV, guardLeftovers, guardRemove, guardTable } from '../firewall/fail-closed'
import type { Executor, KernelObject } from '../firewall/types'
import { currentNetns, isProcessAlive, Journal } from './journal'

export interface CleanupReport {
  /** What was removed: "instance ab12 (nft)" for stale journal entries, "nft inet subnet-tunnel-ab12"
   *  for kernel objects that no live entry owned. */
  removed: string[]
  /** Journal entries left alone: alive, or of another network namespace. */
  kept: number
  /** Problems that did not stop the cleanup (unreadable files, failed steps). */
  warnings: string[]
}

export interface CleanupOptions {
  journal: Journal
  /** Defaults to the inode of /proc/self/ns/net. */
  netns?: number
  /** Defaults to isProcessAlive (kill 0 + starttime). */
  isAlive?: (pid: number, startTime: string) => boolean
  /** Also scan the kernel for unowned objects (default true). */
  scanKernel?: boolean
  /** Which backends the scan asks (darwin: pf only); default process.platform. */
  platform?: NodeJS.Platform
  /**
   * Also remove --fail-closed guards of instances that are gone (journal entries, then closed
   * guard rules no live instance owns). Only an explicit `subnet-tunnel cleanup` sets it: a
   * guard outlives its instance on purpose, and a start-up sweep must not open it.
   */
  guards?: boolean
  /** Where cgroup v2 is mounted (tests); default: from /proc/self/mountinfo. */
  cgroupRoot?: string
}

/** Reverts and forgets the dead instances of this namespace, then removes unowned kernel objects. */
export async function cleanupStale(exec: Executor, opts: CleanupOptions): Promise<CleanupReport> {
  const netns = opts.netns ?? currentNetns()
  const alive = opts.isAlive ?? isProcessAlive
  const report: CleanupReport = { removed: [], kept: 0, warnings: [] }

  for (const read of opts.journal.list()) {
    if ('error' in read) {
      report.warnings.push(`${read.file}: ${read.error}`)
      continue
    }
    const e = read.entry
    if (e.netns !== netns || alive(e.helperPid, e.helperStart)) {
      report.kept++
      continue
    }
    const fw = firewallFor(e.method)
    const outcome = await revertSteps(exec, fw.revert(e))
    // pf: a reference that cannot be released is already gone; retrying would never end.
    const failed = outcome.failed.filter((f) => !fw.isSpentStep?.(f.argv))
    // exec --only: its cgroup (and whatever still runs in it) goes after the rules.
    if (failed.length === 0 && e.cgroup !== undefined) {
      const root = opts.cgroupRoot ?? cgroup2Root()
      if (root) await removeCgroup(root, e.cgroup).catch((err: unknown) => report.warnings.push(`instance ${e.id}: ${errorMessage(err)}`))
    }
    if (failed.length === 0) {
      opts.journal.remove(e.id)
      report.removed.push(`instance ${e.id} (${e.method})`)
    } else {
      // Keep the entry: a later cleanup can try again.
      report.warnings.push(...failed.map((f) => `instance ${e.id}: ${f.error}`))
    }
  }

  if (opts.guards) await cleanupGuards(exec, opts.journal, netns, alive, report, opts.scanKernel !== false && (opts.platform ?? process.platform) === 'linux')
  if (opts.scanKernel === false) return report
  // Order matters: list kernel objects FIRST, then read the journal. A starting instance writes
  // its entry before creating objects, so any object we saw already has its entry on disk.
  const found = await scanKernelObjects(exec, opts.platform)
  const owned = new Set<string>()
  for (const read of opts.journal.list()) {
    if ('entry' in read && read.entry.netns === netns && alive(read.entry.helperPid, read.entry.helperStart)) owned.add(read.entry.id)
  }
  for (const obj of found) {
    if (owned.has(obj.id) || (obj.ownedBy && [...owned].some(obj.ownedBy))) continue
    try {
      const outcome = await revertSteps(exec, obj.revert)
      if (outcome.failed.length === 0) report.removed.push(obj.label)
      report.warnings.push(...outcome.failed.map((f) => `${obj.label}: ${f.error}`))
    } catch (err) {
      report.warnings.push(`${obj.label}: ${errorMessage(err)}`)
    }
  }
  return report
}

/** Removes the guards of dead instances of this namespace, then closed guards nobody owns. */
async function cleanupGuards(
  exec: Executor,
  journal: Journal,
  netns: number,
  alive: (pid: number, startTime: string) => boolean,
  report: CleanupReport,
  scan: boolean,
): Promise<void> {
  const owned = new Set<number>()
  for (const read of journal.listGuards()) {
    if ('error' in read) {
      report.warnings.push(`${read.file}: ${read.error}`)
      continue
    }
    const g = read.entry
    if (g.netns !== netns || alive(g.helperPid, g.helperStart)) {
      if (g.netns === netns) owned.add(guardTable(g.id))
      continue
    }
    // A rule that is not there (the guard was open) is no failure: remove what exists.
    await revertSteps(exec, guardRemove(g))
    journal.removeGuard(g.id)
    report.removed.push(`fail-closed guard of instance ${g.id}`)
  }
  if (!scan) return
  const listed = await Promise.all(GUARD_SCAN_ARGV.map((argv) => exec.run(argv)))
  for (const obj of guardLeftovers(listed.map((r) => (r.code === 0 ? r.stdout : undefined)), owned)) {
    const outcome = await revertSteps(exec, obj.revert)
    if (outcome.failed.length === 0) report.removed.push(obj.label)
    else report.warnings.push(...outcome.failed.map((f) => `${obj.label}: ${f.error}`))
  }
}

/**
 * Every backend's objects in this kernel (Firewall.leftovers: iptables, ip6tables, nft, the tun
 * backend's devices, rules and tables — on macOS our pf anchors instead); missing tools are
 * skipped. Read-only listings, run side by side: this is on every start-up's critical path.
 */
export async function scanKernelObjects(exec: Executor, platform: NodeJS.Platform = process.platform): Promise<KernelObject[]> {
  return (await Promise.all(backendsOn(platform).map((fw) => fw.leftovers(exec)))).flat()
}
