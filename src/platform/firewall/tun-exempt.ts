/**
 * Split DNS on the tun backend: our forwarder's own queries must not be routed into the device.
 *
 * With split DNS, names outside the domains are forwarded by the main process to the machine's
 * original resolver. When that resolver is a captured nameserver, it has a host route into the
 * device (tun.ts), so our forwarded query would come back to the engine, which hands it to our
 * DNS service again: a loop. nat and nft exempt the forwarder's source port in their rules; with
 * tun, routing decides, so the exemption is policy routing (kernel ≥ 4.17: ipproto/sport/dport
 * selectors), per family with captured servers and per exempt port:
 *
 *   5353: from all iif lo uidrange U-U ipproto udp sport P dport 53 goto 5355
 *   5353: from all iif lo uidrange U-U ipproto tcp sport P dport 53 goto 5355   (TCP retries)
 *   5355: from all iif st<id> nop                                              (the jump's target)
 *
 * `goto 5355` skips exactly our rules at 5354 (this instance's and any other's): the query then
 * follows whatever this machine's routing says without us — a VPN's policy rules after ours
 * included (wg-quick's at 32764/32765), which `lookup main` would have skipped, leaking the query
 * to the main table's default route. A goto needs a rule at its target priority (without one it
 * is ignored and the query would go into the device): each instance adds its own `nop` there,
 * named by its device (`iif st<id>`: packets the engine writes into the device match it, and a
 * nop does nothing), so the revert and the leftover scan find it from the id alone. Gotos target
 * the first rule at 5355; when that one goes, the kernel moves them to the next one at 5355.
 *
 * Who can use the exemption: `iif lo` only matches packets this machine sends (never forwarded
 * ones), `uidrange` only sockets of the device owner — the main process, whose forwarder holds
 * the port. Another local user who binds the same port number gets nothing from it; a process
 * of our own uid could, but it could also read our memory. And all it would get is to send DNS
 * to port 53 the way it would go without the tunnel: nothing the machine's routing does not
 * already allow.
 *
 * 5353 is also the --fail-closed guard's priority (fail-closed.ts: `lookup <guard table>`, told
 * apart by its table). Same-priority rules run in the order they were added: gotos added at
 * apply precede a guard added later, so our forwarder's queries skip it too — they are queries
 * for local names, which go to the original resolver outside the tunnel by design.
 *
 * The journal records the ports (ScopeRecord.dnsExemptPorts), so the revert of a dead instance
 * removes its gotos; the leftover scan (tun-scan.ts) also finds gotos of this shape that no live
 * instance's nop stands behind.
 */
import { dnsServersOf, DNS_PORT, exemptPorts } from './dns-capture'
import type { CaptureSpec } from './types'

/** Priority of the exempting gotos: just before the tunnel rules (TUN_RULE_PRIORITY, 5354). */
export const TUN_EXEMPT_PRIORITY = 5353
/** Priority of the gotos' target: just after the tunnel rules. */
export const TUN_EXEMPT_TARGET = 5355
/** Both transports of the forwarder: UDP, and TCP for truncated answers (same port number). */
const PROTOS = ['udp', 'tcp'] as const

function ipArgv(family: 4 | 6, ...args: string[]): string[] {
  return ['ip', `-${family}`, ...args]
}

/** The selector of one exempting goto, without the uid (a revert matches whatever uid it has). */
function exemptMatch(proto: 'udp' | 'tcp', port: number): string[] {
  return ['ipproto', proto, 'sport', String(port), 'dport', String(DNS_PORT)]
}

/** The families whose captured nameservers need the exemption (spec.dns with exempt ports). */
export function exemptFamilies(spec: CaptureSpec): Array<4 | 6> {
  const dns = spec.dns
  if (!dns || exemptPorts(dns).length === 0) return []
  return ([4, 6] as const).filter((f) => dnsServersOf(dns, f).length > 0)
}

/**
 * The argv that add the exemption of a (checked) spec, for the device `dev`: per family the nop
 * target first, then the gotos (so a goto is never unresolved). Empty without exempt ports.
 */
export function tunExemptApply(spec: CaptureSpec, dev: string): string[][] {
  const dns = spec.dns
  if (!dns) return []
  const uid = String(spec.tunOwner)
  const out: string[][] = []
  for (const f of exemptFamilies(spec)) {
    out.push(ipArgv(f, 'rule', 'add', 'priority', String(TUN_EXEMPT_TARGET), 'iif', dev, 'nop'))
    for (const port of exemptPorts(dns)) {
      for (const proto of PROTOS) {
        out.push(ipArgv(f, 'rule', 'add', 'priority', String(TUN_EXEMPT_PRIORITY), 'iif', 'lo', 'uidrange', `${uid}-${uid}`,
          ...exemptMatch(proto, port), 'goto', String(TUN_EXEMPT_TARGET)))
      }
    }
  }
  return out
}

/** Deletes the gotos of these ports (any uid) in these families. */
export function exemptGotosRevert(families: ReadonlyArray<4 | 6>, ports: readonly number[]): string[][] {
  const out: string[][] = []
  for (const f of families) {
    for (const port of new Set(ports)) {
      for (const proto of PROTOS) out.push(exemptGotoDel(f, proto, port))
    }
  }
  return out
}

function exemptGotoDel(family: 4 | 6, proto: 'udp' | 'tcp', port: number): string[] {
  return ipArgv(family, 'rule', 'del', 'priority', String(TUN_EXEMPT_PRIORITY), 'iif', 'lo', ...exemptMatch(proto, port), 'goto', String(TUN_EXEMPT_TARGET))
}

/** Deletes the device's nop target (in every family: a missing one counts as gone). */
export function exemptTargetRevert(dev: string, families: ReadonlyArray<4 | 6>): string[][] {
  return families.map((f) => ipArgv(f, 'rule', 'del', 'priority', String(TUN_EXEMPT_TARGET), 'iif', dev, 'nop'))
}

/** Something of the exemption found by the leftover scan in `ip rule show` output. */
export type ExemptRuleFound =
  | { readonly kind: 'goto'; readonly family: 4 | 6; readonly proto: 'udp' | 'tcp'; readonly port: number; readonly revert: string[][] }
  | { readonly kind: 'target'; readonly family: 4 | 6; readonly dev: string; readonly revert: string[][] }

/**
 * The exemption's rules in one family's `ip rule show` output: gotos of exactly our shape at our
 * priority, and nop targets of a device named like ours (`st` + [a-z0-9]{1,13}).
 */
export function parseExemptRules(text: string, family: 4 | 6): ExemptRuleFound[] {
  const out: ExemptRuleFound[] = []
  const gotoRe = new RegExp(`^${TUN_EXEMPT_PRIORITY}:\\s+from all iif lo (?:uidrange \\d+-\\d+ )?ipproto (udp|tcp) sport (\\d{1,5}) dport ${DNS_PORT} goto ${TUN_EXEMPT_TARGET}(?: \\[unresolved\\])?$`)
  const targetRe = new RegExp(`^${TUN_EXEMPT_TARGET}:\\s+from all iif (st[a-z0-9]{1,13})(?: \\[detached\\])? nop$`)
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const g = gotoRe.exec(line)
    if (g) {
      const proto = g[1] as 'udp' | 'tcp'
      const port = Number(g[2])
      if (port >= 1 && port <= 65535) out.push({ kind: 'goto', family, proto, port, revert: [exemptGotoDel(family, proto, port)] })
      continue
    }
    const t = targetRe.exec(line)
    if (t) out.push({ kind: 'target', family, dev: t[1], revert: exemptTargetRevert(t[1], [family]) })
  }
  return out
}
