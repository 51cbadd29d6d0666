'use strict'
/**
 * What a contender left in the client namespace after it stopped (pure: parses listings).
 *
 * Firewall paths (nat, nft, sshuttle) leave chains or tables named after the tool. The TUN path
 * leaves none of those; its kernel objects are a link `st<id>` (alias `subnet-tunnel-<id>`), a
 * routing table 0x53000000 + 24 bits, and `ip rule`s at priority 5354 (src/platform/firewall/tun.ts).
 * All of them are looked for after every stop: the next contender must start from a clean
 * namespace, and a path that leaks should be seen.
 */

/** Priority of the tun path's policy rules (src/platform/firewall/tun.ts TUN_RULE_PRIORITY). */
const TUN_RULE_PRIORITY = 5354
/** Its routing tables: TUN_TABLE_BASE .. TUN_TABLE_BASE + 0xffffff (src/platform/firewall/tun.ts). */
const TUN_TABLE_BASE = 0x53000000
const TUN_TABLE_LAST = TUN_TABLE_BASE + 0xffffff

const lines = (text) => (text || '').split('\n').map((l) => l.trim()).filter(Boolean)

/**
 * `ip -o link show` lines of a TUN link of ours: named st<id> (a veth listed as `c0@if2` has
 * an @; ours never does) — or any link carrying our alias, whatever its name.
 */
function tunLinks(text) {
  return lines(text).filter((l) => /^\d+:\s+st[a-z0-9]{1,13}:\s/.test(l) || /\balias subnet-tunnel-/.test(l))
}

/** `ip rule show` lines at our priority (IPv4 and IPv6 listings alike). */
function tunRules(text) {
  return lines(text).filter((l) => l.startsWith(`${TUN_RULE_PRIORITY}:`))
}

/** `ip route show table all` lines in one of our tables (ip prints table numbers in decimal). */
function tunRoutes(text) {
  return lines(text).filter((l) => {
    const m = /\btable (\d+)\b/.exec(l)
    return m && Number(m[1]) >= TUN_TABLE_BASE && Number(m[1]) <= TUN_TABLE_LAST
  })
}

/**
 * Everything left behind, as short descriptions (empty: clean).
 * @param dumps { firewall?: string (iptables-save + nft list ruleset), links?, rules?, routes? }
 * @param mark RegExp a firewall line of the tool matches (e.g. /subnet-tunnel/, /sshuttle/)
 */
function leftoversIn(dumps, mark) {
  return [
    ...lines(dumps.firewall).filter((l) => mark.test(l)).map((l) => `rule: ${l}`),
    ...tunLinks(dumps.links).map((l) => `link: ${l.split('\\')[0].trim()}`),
    ...tunRules(dumps.rules).map((l) => `ip rule: ${l}`),
    ...tunRoutes(dumps.routes).map((l) => `route: ${l}`),
  ]
}

module.exports = { TUN_RULE_PRIORITY, TUN_TABLE_BASE, tunLinks, tunRules, tunRoutes, leftoversIn }
