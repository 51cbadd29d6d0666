/**
 * Read-only questions the tun backend asks the kernel: whether a routing table is taken, the
 * host-wide rp_filter, and the leftover scan (our devices, rules and tables).
 */
import { parseIptablesS } from './nat'
import { OBJECT_PREFIX } from './naming'
import { parseExemptRules } from './tun-exempt'
import { ip, isTunTable, type RuleCounts, tableRevert, TUN_PREFIX, TUN_RULE_PRIORITY, tunRevert, tunTable } from './tun-naming'
import type { Executor } from './types'

/** net.ipv4.conf.all.rp_filter (0 off, 1 strict, 2 loose), or undefined when unreadable. */
export async function rpFilterAll(exec: Executor): Promise<number | undefined> {
  const r = await exec.run(['sysctl', '-n', 'net.ipv4.conf.all.rp_filter'])
  return r.code === 0 && /^\d+$/.test(r.stdout.trim()) ? Number(r.stdout.trim()) : undefined
}

/** Whether some `ip rule` of these families already looks up `table` (see helper-server). */
export async function tunTableInUse(exec: Executor, table: number, families: ReadonlyArray<4 | 6>): Promise<boolean> {
  for (const f of families) {
    const r = await exec.run(ip(f, 'rule', 'show'))
    if (r.code === 0 && new RegExp(`\\blookup ${table}\\b`).test(r.stdout)) return true
  }
  return false
}

/**
 * Read-only listings the leftover scan needs (run side by side). The mangle tables hold exec
 * --only's mark chains when iptables made them (tun-only.ts); its nft table is an ordinary
 * `inet subnet-tunnel-<id>`, which the nft backend's scan finds and deletes.
 */
export const TUN_SCAN_ARGV: readonly string[][] = [
  ['ip', '-o', 'link', 'show'],
  ip(4, 'rule', 'show'),
  ip(6, 'rule', 'show'),
  ip(4, 'route', 'show', 'table', 'all'),
  ip(6, 'route', 'show', 'table', 'all'),
  ['iptables', '-w', '-t', 'mangle', '-S'],
  ['ip6tables', '-w', '-t', 'mangle', '-S'],
]

/**
 * A leftover of the tun backend: a device (id known), a table without a device (id unknown), or
 * a rule of split DNS's exemption (tun-exempt.ts: a nop target names its id, a goto none).
 */
export interface TunLeftover {
  readonly id?: string
  readonly table?: number
  readonly label: string
  readonly revert: string[][]
  /** Whether a live instance owns it (default: its table is the one the id hashes to). */
  readonly ownedBy?: (instanceId: string) => boolean
}

/**
 * Our leftovers in the outputs of TUN_SCAN_ARGV (same order; an undefined output = the
 * listing failed). A device counts only with name `st<id>` AND alias `subnet-tunnel-<id>`;
 * a table only in our range, and for rules only at our priority. A table whose device was
 * found is removed with it.
 */
export function parseTunLeftovers(outputs: ReadonlyArray<string | undefined>): TunLeftover[] {
  const [links, rules4, rules6, routes4, routes6, mangle4, mangle6] = outputs
  // Without IPv6 (`ip -6 rule show` failed) there is nothing to delete there, and trying would
  // fail with "Address family not supported" on every cleanup.
  const families: Array<4 | 6> = rules6 === undefined ? [4] : [4, 6]
  const orphan = new Set<number>()
  // Rules per table and family: `ip rule del` removes one per run (--owner-only has two for IPv4).
  const counts = new Map<number, RuleCounts>()
  for (const [f, text] of [[4, rules4], [6, rules6]] as const) {
    for (const line of (text ?? '').split('\n')) {
      const m = /^(\d+):\s.*\blookup (\d+)\b/.exec(line.trim())
      if (!m || Number(m[1]) !== TUN_RULE_PRIORITY || !isTunTable(Number(m[2]))) continue
      const t = Number(m[2])
      orphan.add(t)
      const c = counts.get(t) ?? {}
      counts.set(t, { ...c, [f]: (c[f] ?? 0) + 1 })
    }
  }
  const out: TunLeftover[] = []
  const tables = new Set<number>()
  for (const line of (links ?? '').split('\n')) {
    // "12: st1a2b3c4d: <…> mtu 1500 … \    link/none \    alias subnet-tunnel-1a2b3c4d"
    const m = /^\d+:\s+(st([a-z0-9]{1,13}))(?:@\S+)?:\s.*\balias (\S+)\s*$/.exec(line.trim())
    if (!m || m[3] !== OBJECT_PREFIX + m[2]) continue
    const table = tunTable(m[2])
    tables.add(table)
    out.push({ id: m[2], table, label: `tun link ${m[1]}`, revert: tunRevert(m[2], families, counts.get(table)) })
  }
  for (const text of [routes4, routes6]) {
    for (const line of (text ?? '').split('\n')) {
      const m = /\btable (\d+)\b/.exec(line)
      if (m && isTunTable(Number(m[1]))) orphan.add(Number(m[1]))
    }
  }
  for (const t of [...orphan].sort((a, b) => a - b)) {
    if (tables.has(t)) continue
    out.push({ table: t, label: `routing table ${t}`, revert: tableRevert(t, families, counts.get(t)) })
  }
  // exec --only's mark chains: each names its instance (the table its id hashes to is the key a
  // live instance is recognised by, like a table's).
  for (const [bin, text] of [['iptables', mangle4], ['ip6tables', mangle6]] as const) {
    for (const o of text === undefined ? [] : parseIptablesS(bin, text, 'mangle')) {
      out.push({ id: o.id, table: tunTable(o.id), label: o.label, revert: o.revert })
    }
  }
  out.push(...exemptLeftovers([rules4, rules6]))
  return out
}

/**
 * Split DNS's exemption rules (tun-exempt.ts), each an object of its own (a device's revert
 * without its journal entry does not know them): a nop target names its device, so it belongs
 * to that id; a goto names no instance, so it is left to whichever live instance has a target in
 * its family (a starting instance adds its target first, and one `ip rule show` lists both) —
 * only when none has is it removed.
 */
function exemptLeftovers(rules: ReadonlyArray<string | undefined>): TunLeftover[] {
  const out: TunLeftover[] = []
  rules.forEach((text, i) => {
    const family = i === 0 ? 4 : 6
    const found = parseExemptRules(text ?? '', family)
    const targets = new Set(found.flatMap((r) => (r.kind === 'target' ? [r.dev.slice(TUN_PREFIX.length)] : [])))
    for (const r of found) {
      if (r.kind === 'target') {
        const id = r.dev.slice(TUN_PREFIX.length)
        out.push({ id, table: tunTable(id), label: `IPv${family} rule iif ${r.dev} nop (split DNS)`, revert: r.revert })
      } else {
        out.push({ label: `IPv${family} rule ${r.proto} sport ${r.port} dport 53 goto (split DNS)`, revert: r.revert, ownedBy: (id) => targets.has(id) })
      }
    }
  })
  return out
}
