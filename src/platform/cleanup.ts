/**
 * Removal of what dead instances left behind, in this network namespace only:
 *  1. journal entries whose helper is dead (pid gone, or reused: starttime differs) → revert + delete;
 *  2. a safety net: kernel objects named `subnet-tunnel-*` that no live journal entry owns.
 *
 * Security: the revert argv stored in a journal file is never executed. It is recomputed from
 * the entry's method, id, families and scope (gateway interfaces and sources, owner uid, DNS
 * guard), so a forged file can at most make us delete objects named `subnet-tunnel-<id>` and the
 * jumps into them (tun: the device `st<id>` and the id's routing table).
 */
import { errorMessage } from '../errors'
import { revertScopeOf } from './capture-scope'
import { currentNetns, isProcessAlive, Journal } from './journal'
import { revertFor } from './choose-method'
import { OBJECT_NAME_RE } from './naming'
import { revertSteps } from './executor'
import { isPfReleaseStep, parsePfAnchors, PF_LIST_ANCHORS_ARGV } from './pf'
import { parseTunLeftovers, TUN_SCAN_ARGV, tunTable } from './tun'
import type { Executor } from './types'

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
  /** Which tools the scan asks (darwin: pfctl only); default process.platform. */
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
    const outcome = await revertSteps(exec, revertFor(e.method, e.id, e.families, revertScopeOf(e), e.pfToken))
    // pf: a reference that cannot be released is already gone (pf.ts); retrying would never end.
    const failed = outcome.failed.filter((f) => !isPfReleaseStep(f.argv))
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
  // tun routing tables are named by a hash of the id: a table alone (no device) is owned when
  // a live instance's id hashes to it.
  const ownedTables = new Set<number>()
  for (const read of opts.journal.list()) {
    if ('entry' in read && read.entry.netns === netns && alive(read.entry.helperPid, read.entry.helperStart)) {
      owned.add(read.entry.id)
      ownedTables.add(tunTable(read.entry.id))
    }
  }
  for (const obj of found) {
    if (owned.has(obj.id) || (obj.table !== undefined && ownedTables.has(obj.table))) continue
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

/** One of our kernel objects found by the scan, with the argv that removes it. */
export interface KernelObject {
  /** The instance id; empty for a tun routing table found without its device. */
  readonly id: string
  /** tun: the routing table (see tun.ts). */
  readonly table?: number
  readonly label: string
  readonly revert: string[][]
}

/**
 * Lists our objects in iptables, ip6tables (nat and filter tables), nft and the tun backend's devices,
 * rules and routing tables — on macOS our pf anchors
 * under com.apple instead; missing tools are skipped.
 */
export async function scanKernelObjects(exec: Executor, platform: NodeJS.Platform = process.platform): Promise<KernelObject[]> {
  if (platform === 'darwin') {
    const pf = await exec.run(PF_LIST_ANCHORS_ARGV)
    return pf.code === 0 ? parsePfAnchors(pf.stdout) : []
  }
  // Read-only listings, run side by side: this is on every start-up's critical path.
  // The filter table holds the DNS guard's chains (nat with --gateway/--owner-only and --dns).
  const [v4, v6, v4f, v6f, nft, ...tun] = await Promise.all([
    exec.run(['iptables', '-w', '-t', 'nat', '-S']),
    exec.run(['ip6tables', '-w', '-t', 'nat', '-S']),
    exec.run(['iptables', '-w', '-t', 'filter', '-S']),
    exec.run(['ip6tables', '-w', '-t', 'filter', '-S']),
    exec.run(['nft', 'list', 'tables']),
    ...TUN_SCAN_ARGV.map((argv) => exec.run(argv)),
  ])
  return [
    ...(v4.code === 0 ? parseIptablesS('iptables', v4.stdout) : []),
    ...(v6.code === 0 ? parseIptablesS('ip6tables', v6.stdout) : []),
    ...(v4f.code === 0 ? parseIptablesS('iptables', v4f.stdout, 'filter') : []),
    ...(v6f.code === 0 ? parseIptablesS('ip6tables', v6f.stdout, 'filter') : []),
    ...(nft.code === 0 ? parseNftTables(nft.stdout) : []),
    ...parseTunLeftovers(tun.map((r) => (r.code === 0 ? r.stdout : undefined))).map((o) => ({ ...o, id: o.id ?? '' })),
  ]
}

/**
 * Our chains in `iptables -t <table> -S` output, each with argv that delete every jump to it
 * (`-A X … -j subnet-tunnel-id` → `-D X …`), then flush and delete it.
 */
export function parseIptablesS(bin: 'iptables' | 'ip6tables', text: string, table: 'nat' | 'filter' = 'nat'): KernelObject[] {
  const lines = text.split('\n').map((l) => l.trim())
  const out: KernelObject[] = []
  for (const line of lines) {
    const m = /^-N (\S+)$/.exec(line)
    const id = m && OBJECT_NAME_RE.exec(m[1])?.[1]
    if (!m || !id) continue
    const chain = m[1]
    const revert: string[][] = []
    for (const jump of lines) {
      const t = jump.split(/\s+/)
      // Only simple jump lines (no quoted comments) are re-issued as -D: they split exactly.
      if (t[0] === '-A' && t[t.length - 2] === '-j' && t[t.length - 1] === chain && !jump.includes('"')) {
        revert.push([bin, '-w', '-t', table, '-D', ...t.slice(1)])
      }
    }
    revert.push([bin, '-w', '-t', table, '-F', chain], [bin, '-w', '-t', table, '-X', chain])
    out.push({ id, label: `${bin} ${table} ${chain}`, revert })
  }
  return out
}

/** Our tables in `nft list tables` output ("table inet subnet-tunnel-<id>"). */
export function parseNftTables(text: string): KernelObject[] {
  const out: KernelObject[] = []
  for (const line of text.split('\n')) {
    const m = /^table inet (\S+)$/.exec(line.trim())
    const id = m && OBJECT_NAME_RE.exec(m[1])?.[1]
    if (!m || !id) continue
    out.push({ id, label: `nft inet ${m[1]}`, revert: [['nft', 'delete', 'table', 'inet', m[1]]] })
  }
  return out
}
