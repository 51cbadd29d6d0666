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
    if (failed.length === 0) {
      opts.journal.remove(e.id)
      report.removed.push(`instance ${e.id} (${e.method})`)
    } else {
      // Keep the entry: a later cleanup can try again.
      report.warnings.push(...failed.map((f) => `instance ${e.id}: ${f.error}`))
    }
  }

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

/**
 * Every backend's objects in this kernel (Firewall.leftovers: iptables, ip6tables, nft, the tun
 * backend's devices, rules and tables — on macOS our pf anchors instead); missing tools are
 * skipped. Read-only listings, run side by side: this is on every start-up's critical path.
 */
export async function scanKernelObjects(exec: Executor, platform: NodeJS.Platform = process.platform): Promise<KernelObject[]> {
  return (await Promise.all(backendsOn(platform).map((fw) => fw.leftovers(exec)))).flat()
}
