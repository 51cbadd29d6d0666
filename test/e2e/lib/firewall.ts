/**
 * Inspects the kernel redirection state inside a testbed's client namespace. Every kernel
 * object subnet-tunnel creates is named `subnet-tunnel-<instance>` (chains for nat, a table
 * for nft), so "anything left?" is a text search over the three dumps.
 */
import type { Testbed } from './testbed'

export interface FirewallDump {
  iptables: string
  ip6tables: string
  nft: string
}

export const MARK = /subnet-tunnel/i

/** iptables-save, ip6tables-save and `nft list ruleset` of the client namespace. */
export async function dumpFirewall(tb: Testbed): Promise<FirewallDump> {
  const [v4, v6, nft] = await Promise.all([
    tb.exec('client', ['iptables-save'], { timeoutMs: 10_000 }),
    tb.exec('client', ['ip6tables-save'], { timeoutMs: 10_000 }),
    tb.exec('client', ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 }),
  ])
  return { iptables: v4.stdout, ip6tables: v6.stdout, nft: nft.stdout }
}

/**
 * Lines of any dump that mention subnet-tunnel, prefixed by the dump they come from. For nft,
 * every line of a table named subnet-tunnel-… counts (its rules do not repeat the name), so the
 * result also shows what the rules match on (addresses of includes and excludes).
 */
export async function leftoverRules(tb: Testbed): Promise<string[]> {
  const d = await dumpFirewall(tb)
  const out: string[] = []
  for (const [k, text] of Object.entries(d)) {
    let inOurTable = false
    for (const line of text.split('\n')) {
      // `nft list ruleset` prints each table as a block: "table <family> <name> {" … "}" at column 0.
      if (/^table /.test(line)) inOurTable = MARK.test(line)
      if (inOurTable || MARK.test(line)) out.push(`${k}: ${line.trim()}`)
      if (/^}/.test(line)) inOurTable = false
    }
  }
  return out
}

/** Polls until no subnet-tunnel object is left or withinMs passes; returns what is left. */
export async function waitForNoRules(tb: Testbed, withinMs: number): Promise<string[]> {
  const deadline = Date.now() + withinMs
  for (;;) {
    const left = await leftoverRules(tb)
    if (left.length === 0 || Date.now() >= deadline) return left
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The tun backend's objects in the client namespace (they carry no `subnet-tunnel` name in the
 * dumps above): st* links, rules at our priorities (5353 split DNS's gotos, 5354 the tunnel,
 * 5355 the gotos' targets) and routes into st* devices or in our tables.
 */
export async function tunObjects(tb: Testbed): Promise<string[]> {
  const [links, rules4, rules6, routes4, routes6] = await Promise.all([
    tb.exec('client', ['ip', '-o', 'link', 'show']),
    tb.exec('client', ['ip', '-4', 'rule', 'show']),
    tb.exec('client', ['ip', '-6', 'rule', 'show']),
    tb.exec('client', ['ip', '-4', 'route', 'show', 'table', 'all']),
    tb.exec('client', ['ip', '-6', 'route', 'show', 'table', 'all']),
  ])
  return [
    ...links.stdout.split('\n').filter((l) => /^\d+: st[a-z0-9]+:/.test(l) || l.includes('subnet-tunnel')),
    ...`${rules4.stdout}\n${rules6.stdout}`.split('\n').filter((l) => /^535[345]:/.test(l)),
    ...`${routes4.stdout}\n${routes6.stdout}`.split('\n').filter((l) => /\bdev st[a-z0-9]+\b|table 1[34]\d{8}\b/.test(l)),
  ]
}
