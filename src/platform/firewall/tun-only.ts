/**
 * exec --only on the tun backend: routes cannot tell one program from another, so a small
 * firewall part marks the packets of the command's cgroup, and the instance's `ip rule` routes
 * by that mark (`fwmark M lookup T`) instead of routing everything (tun.ts).
 *
 * The mark M is the instance's routing table number (0x53000000 + 24 bits of the id's hash,
 * tun-naming.ts): distinct per instance like the table, so a second instance's packets never
 * take the first one's rule. It is set on every packet of the cgroup's sockets (the table then
 * decides: an address it does not route falls through to main), replacing whatever mark such a
 * packet had; nothing else on the host is marked.
 *
 * Source validation: connect() chooses its route — and so its source address — before the
 * firewall marks anything, i.e. from main (eth0's address, say). The packet is then rerouted
 * into the device, and the engine's replies come back through it. With strict rp_filter on the
 * device (its owner is not root, or `all` is strict) the kernel checks the reply's source by a
 * lookup that carries mark 0, which main answers with another interface: every reply would be
 * dropped. So conntrack keeps the mark (`ct mark` / CONNMARK) and restores it on packets that
 * arrive from the device, and the device gets src_valid_mark=1: replies to the command's
 * connections pass, anything else its owner writes still needs a route back into the device —
 * and without the mark none exists.
 *
 * nft (a `table inet subnet-tunnel-<id>`: a `route` chain on output, whose mark change makes the
 * kernel route the packet again, and a prerouting chain) when cgroup v2 is at /sys/fs/cgroup,
 * where nft resolves the cgroup's path, and nft is installed; else iptables' mangle table (a
 * chain `subnet-tunnel-<id>` per family, jumped to from OUTPUT by `-m cgroup --path` and from
 * PREROUTING by the device and the connection mark). The names are those of the nat and nft
 * backends' objects: their scans find them after a SIGKILL too (nft's table list, the tun
 * backend's mangle listing).
 *
 * Limit: a destination main has no route to at all fails in connect() ("Network is
 * unreachable") before any mark is set, so the command needs some route there outside the
 * tunnel (a default route does). A fallback route for unmarked lookups would send every other
 * process's connections there into the device as well — the opposite of --only — so there is
 * none; the helper warns instead (unroutedIncludes).
 */
import { formatCidr } from '../../config/cidr'
import { objectName } from './naming'
import { ip, tunDeviceName, tunTable } from './tun-naming'
import type { CaptureSpec, CgroupMatch, Executor } from './types'

export type { CgroupMatch }

export function isCgroupMatch(v: unknown): v is CgroupMatch {
  return v === 'nft' || v === 'iptables'
}

/** The packet and connection mark of an instance (hex, as `ip rule` and iptables print it). */
export function tunMark(instanceId: string): string {
  return `0x${tunTable(instanceId).toString(16)}`
}

/** What the mark part needs from a spec or a journal record. */
export interface TunOnlyScope {
  readonly cgroup: string
  readonly cgroupMatch: CgroupMatch
  readonly ownerUid?: number
}

const BIN: Record<4 | 6, string> = { 4: 'iptables', 6: 'ip6tables' }

function mangle(f: 4 | 6, ...args: string[]): string[] {
  return [BIN[f], '-w', '-t', 'mangle', ...args]
}

/** The OUTPUT jump's match: the cgroup, and with --owner-only the uid. */
function outputMatch(s: TunOnlyScope): string[] {
  return ['-m', 'cgroup', '--path', s.cgroup, ...(s.ownerUid === undefined ? [] : ['-m', 'owner', '--uid-owner', String(s.ownerUid)])]
}

function preroutingMatch(instanceId: string): string[] {
  return ['-i', tunDeviceName(instanceId), '-m', 'connmark', '--mark', tunMark(instanceId)]
}

/** The sysctl that lets the reverse-path check see the restored mark (see the module comment). */
export function srcValidMarkSysctl(dev: string): string[] {
  return ['sysctl', '-q', '-w', `net.ipv4.conf.${dev}.src_valid_mark=1`]
}

/** Pure: the argv that mark the cgroup's packets (spec.cgroup and spec.cgroupMatch are set). */
export function tunOnlyApply(spec: CaptureSpec & TunOnlyScope, families: ReadonlyArray<4 | 6>): string[][] {
  const id = spec.instanceId
  const table = objectName(id)
  const mark = tunMark(id)
  if (spec.cgroupMatch === 'nft') {
    // One transaction (see nft.ts). Priority -150 is mangle's: after conntrack (-200), so the
    // connection exists to take the mark. Names are quoted nft strings; both are [a-z0-9-] only.
    const cmds: string[][] = [
      ['create', 'table', 'inet', table],
      ['add', 'chain', 'inet', table, 'output', '{', 'type', 'route', 'hook', 'output', 'priority', '-150', ';', 'policy', 'accept', ';', '}'],
      // A positive match (see nft.ts: `socket cgroupv2 level 1` never matches a socket of the root cgroup).
      ['add', 'rule', 'inet', table, 'output', 'socket', 'cgroupv2', 'level', '1', `"${spec.cgroup}"`,
        ...(spec.ownerUid === undefined ? [] : ['meta', 'skuid', String(spec.ownerUid)]), 'meta', 'mark', 'set', mark, 'ct', 'mark', 'set', mark],
      ['add', 'chain', 'inet', table, 'prerouting', '{', 'type', 'filter', 'hook', 'prerouting', 'priority', '-150', ';', 'policy', 'accept', ';', '}'],
      ['add', 'rule', 'inet', table, 'prerouting', 'iifname', `"${tunDeviceName(id)}"`, 'ct', 'mark', mark, 'meta', 'mark', 'set', mark],
    ]
    const argv = ['nft']
    cmds.forEach((c, i) => argv.push(...(i > 0 ? [';'] : []), ...c))
    return [argv]
  }
  const out: string[][] = []
  for (const f of families) {
    out.push(mangle(f, '-N', table))
    out.push(mangle(f, '-A', table, '-j', 'MARK', '--set-mark', mark))
    out.push(mangle(f, '-A', table, '-j', 'CONNMARK', '--set-mark', mark))
    // The jumps last: until then nothing reaches the chain. The cgroup match is only valid on
    // the output side, so it goes on the jump, and PREROUTING has a jump of its own.
    out.push(mangle(f, '-I', 'OUTPUT', '1', ...outputMatch(spec), '-j', table))
    out.push(mangle(f, '-I', 'PREROUTING', '1', ...preroutingMatch(id), '-j', table))
  }
  return out
}

/** The argv that remove the mark part, from the id, families and scope alone (journal records too). */
export function tunOnlyRevert(instanceId: string, families: ReadonlyArray<4 | 6>, s: TunOnlyScope): string[][] {
  const table = objectName(instanceId)
  if (s.cgroupMatch === 'nft') return [['nft', 'delete', 'table', 'inet', table]]
  const out: string[][] = []
  for (const f of families) {
    out.push(mangle(f, '-D', 'PREROUTING', ...preroutingMatch(instanceId), '-j', table))
    out.push(mangle(f, '-D', 'OUTPUT', ...outputMatch(s), '-j', table))
    out.push(mangle(f, '-F', table))
    out.push(mangle(f, '-X', table))
  }
  return out
}

/** The mark part's scope of a spec or record, when it has one. */
export function tunOnlyScope(r: { cgroup?: string; cgroupMatch?: CgroupMatch; ownerUid?: number }): TunOnlyScope | undefined {
  if (r.cgroup === undefined || r.cgroupMatch === undefined) return undefined
  return { cgroup: r.cgroup, cgroupMatch: r.cgroupMatch, ...(r.ownerUid !== undefined && { ownerUid: r.ownerUid }) }
}

/** Most includes unroutedIncludes asks about (one `ip route get` each). */
const ROUTE_CHECKS = 16

/**
 * exec --only: the includes this host has no route to without the tunnel (asked before our rules
 * exist), where the command's connections fail before any mark is set (see the module comment).
 */
export async function unroutedIncludes(exec: Executor, spec: CaptureSpec): Promise<string[]> {
  const out: string[] = []
  for (const c of spec.include.slice(0, ROUTE_CHECKS)) {
    const r = await exec.run(ip(c.family, 'route', 'get', c.address))
    if (r.code !== 0 && /unreachable/i.test(r.stderr)) out.push(formatCidr(c))
  }
  return out
}
