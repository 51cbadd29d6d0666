/**
 * The `tun` backend: no firewall rules at all. The privileged helper creates a persistent TUN
 * device owned by the calling user, gives it an address, and routes exactly the tunnelled
 * networks into it with policy routing; the unprivileged main process then opens the device
 * (tun-device.ts) and runs a packet engine on it. Root never touches a packet.
 *
 * Kernel objects of instance <id> (all removable from the id alone):
 *  - the link `st<id>` (IFNAMSIZ allows 15 characters, so ids of at most 13), mode tun, owned by
 *    the caller's uid, alias `subnet-tunnel-<id>` — the alias is what the leftover scan trusts,
 *    so a user's own interface that happens to be called "st…" is never deleted;
 *  - routing table T = 0x53000000 + 24 bits of FNV-1a(id): `<include> dev st<id>` per network
 *    and per captured nameserver (host routes), `throw <exclude>` per exclude that overlaps an
 *    include. A throw route ends the lookup in this table, and the kernel carries on with the
 *    next rule (main): excludes, the bastion and this machine's addresses keep their normal
 *    routes. 24 bits make a table collision between two live instances ~1e-7; the helper
 *    still refuses a table some rule already uses (helper-server.ts);
 *  - one `ip rule` per family at priority 5354 → table T. It goes after `local` (priority 0),
 *    so this machine's own addresses are never routed into the device, and before `main`.
 *
 * Addresses: 169.254.77.1/30 and fd7a:5354::1/126 on every instance's device. They only serve
 * as the source address the kernel picks for packets routed into the device (the engine answers
 * to them); they are link-local / unique-local, never routed anywhere else, and the same
 * address on two devices is allowed (two instances can coexist). `nodad`: a tentative IPv6
 * address cannot be used as a source, and there is no link to detect duplicates on anyway.
 *
 * Source validation and router messages (the device's owner writes packets the kernel takes
 * as received on the device), set right after the device exists, before it is up, when the
 * owner is not root:
 *  - IPv4: rp_filter=1 (strict) on the device: a packet is accepted only when this host would
 *    route its source back into the device, i.e. from the tunnelled networks. The kernel uses
 *    the maximum of `all` and the device's value, so `all`=2 (loose, set by some distributions)
 *    weakens it to "any routable source"; the helper warns then (helper-server.ts).
 *  - IPv6 has no rp_filter (only netfilter's rpfilter match, and this backend runs no firewall):
 *    the owner can send IPv6 packets with any source. Without an IPv6 network in the spec the
 *    device gets no IPv6 at all (disable_ipv6=1). With one, accept_ra=0 and accept_redirects=0:
 *    a Router Advertisement written into the device would otherwise install a default route
 *    (and an address) through it — all of the host's IPv6 traffic into the owner's hands.
 *
 * Gateway mode needs nothing extra: the rule applies to forwarded traffic too (with
 * ip_forward on), so hosts routed through this one are captured like local programs.
 */
import { cidrsOverlap, formatCidr, hostCidr } from '../config/cidr'
import { TunnelError } from '../errors'
import { assertScope } from './capture-scope'
import { firstLine } from './nat'
import { INSTANCE_ID_RE, OBJECT_PREFIX, includedFamilies, orderedRules } from './naming'
import type { CaptureSpec, Executor, Firewall, Plan, ProbeOptions, ProbeResult } from './types'

/** Device name prefix: `st<id>`. */
export const TUN_PREFIX = 'st'
/** Longest instance id that still fits an interface name (IFNAMSIZ 16, NUL included). */
export const TUN_MAX_ID = 13
/** Priority of our `ip rule`s: after local (0), before main (32766). */
export const TUN_RULE_PRIORITY = 5354
/** Routing tables of the tun backend: TUN_TABLE_BASE + 24 bits of the id's hash. */
export const TUN_TABLE_BASE = 0x53000000
const TABLE_MASK = 0xffffff
/**
 * Device MTU (the engine's MSS follows from it): the largest a TUN device takes (ETH_MAX_MTU),
 * as on loopback. Nothing leaves the machine in this form — the engine terminates every TCP
 * connection — so the only effect is fewer, larger packets: the kernel segments what the
 * application sends at the device MTU (a TUN device without IFF_VNET_HDR has no GSO), and every
 * packet costs a read or write syscall and a trip through the engine. Measured with the built-in
 * engine (iperf3, testbed, 2 cores): 1500 → 27 MiB/s up, 62 down; 9000 → 117 / 141;
 * 65535 → 266 / 237. IPv6 needs at least 1280; 65535 also keeps every packet within the 64 KiB
 * libuv reads into (tun-device.ts).
 */
export const TUN_MTU = 65535
/** The device's own addresses (see the module comment). */
export const TUN_ADDR: Record<4 | 6, string> = { 4: '169.254.77.1/30', 6: 'fd7a:5354::1/126' }
/** Largest uid accepted for the device owner: (uid_t)-1 means "no owner" to the kernel. */
export const MAX_UID = 2 ** 32 - 2

/** `st<id>`, after checking the id (a bad id must never reach argv). */
export function tunDeviceName(instanceId: string): string {
  if (!INSTANCE_ID_RE.test(instanceId) || instanceId.length > TUN_MAX_ID) {
    throw new TunnelError('INTERNAL', `instance id "${instanceId}" cannot name a TUN device (at most ${TUN_MAX_ID} of [a-z0-9])`)
  }
  return TUN_PREFIX + instanceId
}

/** The routing table of an instance: deterministic, so the revert needs nothing but the id. */
export function tunTable(instanceId: string): number {
  // FNV-1a, 32 bits.
  let h = 0x811c9dc5
  for (let i = 0; i < instanceId.length; i++) {
    h ^= instanceId.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return TUN_TABLE_BASE + (h & TABLE_MASK)
}

/** Whether a table number is in the tun backend's range. */
export function isTunTable(t: number): boolean {
  return Number.isInteger(t) && t >= TUN_TABLE_BASE && t <= TUN_TABLE_BASE + TABLE_MASK
}

/** A valid device owner: an integer 0..2^32-2. */
export function isUid(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_UID
}

function ip(family: 4 | 6, ...args: string[]): string[] {
  return ['ip', `-${family}`, ...args]
}

/** The rule and table of one table number, all families (leftover scan, revert). */
function tableRevert(table: number, families: ReadonlyArray<4 | 6>): string[][] {
  const t = String(table)
  const out: string[][] = []
  for (const f of families) {
    out.push(ip(f, 'rule', 'del', 'priority', String(TUN_RULE_PRIORITY), 'lookup', t))
    out.push(ip(f, 'route', 'flush', 'table', t))
  }
  return out
}

/**
 * The argv that undo an instance, from its id and families alone (also for stale journal
 * entries): rules first (traffic stops going to the table), then the table, then the link.
 */
export function tunRevert(instanceId: string, families: ReadonlyArray<4 | 6>): string[][] {
  const dev = tunDeviceName(instanceId)
  return [...tableRevert(tunTable(instanceId), families), ['ip', 'link', 'del', 'dev', dev]]
}

/** Checks the parts of a tun spec that end up in argv. */
function assertTunSpec(spec: CaptureSpec): void {
  tunDeviceName(spec.instanceId)
  if (!isUid(spec.tunOwner)) {
    throw new TunnelError('INTERNAL', `tun: invalid device owner ${String(spec.tunOwner)}`)
  }
  assertScope(spec)
}

/** `sysctl -w` of the device's source validation and IPv6 settings (see the module comment). */
export function tunSysctls(dev: string, families: ReadonlyArray<4 | 6>): string[][] {
  const v6 = families.includes(6)
    ? [`net.ipv6.conf.${dev}.accept_ra=0`, `net.ipv6.conf.${dev}.accept_redirects=0`]
    : [`net.ipv6.conf.${dev}.disable_ipv6=1`]
  return [
    ['sysctl', '-q', '-w', `net.ipv4.conf.${dev}.rp_filter=1`],
    // -e: a kernel without IPv6 has no such key, and then no IPv6 to turn off either.
    ['sysctl', '-q', ...(families.includes(6) ? [] : ['-e']), '-w', ...v6],
  ]
}

/** net.ipv4.conf.all.rp_filter (0 off, 1 strict, 2 loose), or undefined when unreadable. */
export async function rpFilterAll(exec: Executor): Promise<number | undefined> {
  const r = await exec.run(['sysctl', '-n', 'net.ipv4.conf.all.rp_filter'])
  return r.code === 0 && /^\d+$/.test(r.stdout.trim()) ? Number(r.stdout.trim()) : undefined
}

/**
 * Pure: the argv that create, address and route the device of `spec`. The device is up and
 * fully routed in its table before the rules make the kernel consult that table.
 */
export function tunPlan(spec: CaptureSpec): Plan {
  assertTunSpec(spec)
  const dev = tunDeviceName(spec.instanceId)
  const table = String(tunTable(spec.instanceId))
  const families = includedFamilies(spec)
  const apply: string[][] = [
    ['ip', 'tuntap', 'add', 'dev', dev, 'mode', 'tun', 'user', String(spec.tunOwner)],
    ['ip', 'link', 'set', 'dev', dev, 'alias', OBJECT_PREFIX + spec.instanceId],
    // Root's own device (the tunnel run as root) needs none: only root can write into it, and
    // root can forge anything anyway — and a container's read-only /proc/sys stays usable.
    ...(spec.tunOwner === 0 ? [] : tunSysctls(dev, families)),
    ['ip', 'link', 'set', 'dev', dev, 'mtu', String(TUN_MTU)],
  ]
  for (const f of families) {
    apply.push(ip(f, 'addr', 'add', TUN_ADDR[f], 'dev', dev, ...(f === 6 ? ['nodad'] : [])))
  }
  apply.push(['ip', 'link', 'set', 'dev', dev, 'up'])
  // Captured nameservers are host routes into the device, like one more include (the engine
  // answers UDP 53 itself). Through orderedRules an exclude of the same address wins, and
  // duplicates disappear (the same route twice would fail with "File exists").
  const dnsHosts = spec.dns ? spec.dns.servers.map((s) => hostCidr(s)) : []
  const routed = [...spec.include, ...dnsHosts]
  // Only excludes that cut into something routed matter; this machine's own addresses are in
  // the exclude list too, and mostly lie outside every include.
  const exclude = spec.exclude.filter((e) => routed.some((r) => cidrsOverlap(e, r)))
  for (const f of families) {
    for (const r of orderedRules({ ...spec, include: routed, exclude }, f)) {
      const dst = formatCidr(r.cidr)
      apply.push(r.action === 'return' ? ip(f, 'route', 'add', 'throw', dst, 'table', table) : ip(f, 'route', 'add', dst, 'dev', dev, 'table', table))
    }
  }
  // --owner-only: only the owner's sockets are routed by the table (the routing lookup carries
  // the socket's uid). The revert's `rule del … lookup T` matches the rule whatever its range.
  const uid = spec.ownerUid === undefined ? [] : ['uidrange', `${spec.ownerUid}-${spec.ownerUid}`]
  for (const f of families) apply.push(ip(f, 'rule', 'add', 'priority', String(TUN_RULE_PRIORITY), ...uid, 'lookup', table))
  return { apply, revert: tunRevert(spec.instanceId, families) }
}

async function probeTun(exec: Executor, opts: ProbeOptions, platform: NodeJS.Platform = process.platform): Promise<ProbeResult> {
  if (platform === 'darwin') {
    // macOS: the main process (as root) creates a utun itself (cli/tun-setup-darwin.ts); nothing
    // here to probe — and none of Linux's commands exist there.
    return { ok: true }
  }
  const dev = await exec.run(['test', '-c', '/dev/net/tun'])
  if (dev.code !== 0) {
    return { ok: false, why: '/dev/net/tun does not exist', hint: 'load the tun module (modprobe tun); in a container, pass --device /dev/net/tun' }
  }
  if ((await exec.run(['sysctl', '-n', 'net.ipv4.conf.all.rp_filter'])).code === 127) {
    return { ok: false, why: 'sysctl not found', hint: 'install procps (the device gets its own source-validation settings)' }
  }
  for (const f of opts.ipv6 ? ([4, 6] as const) : ([4] as const)) {
    const r = await exec.run(ip(f, 'rule', 'show'))
    if (r.code === 127) return { ok: false, why: 'ip not found', hint: 'install iproute2' }
    if (r.code !== 0) {
      return {
        ok: false,
        why: `IPv${f} policy routing unusable: ${firstLine(r.stderr) || `exit ${r.code}`}`,
        hint: f === 6 ? 'IPv6 may be disabled here; tunnel IPv4 networks only' : 'the kernel lacks policy routing (CONFIG_IP_MULTIPLE_TABLES)',
      }
    }
  }
  return { ok: true }
}

/** The TUN backend (routes, no firewall). */
export const tunFirewall: Firewall & { revertFor: typeof tunRevert } = {
  name: 'tun',
  probe: (exec: Executor, opts: ProbeOptions = {}) => probeTun(exec, opts),
  plan: tunPlan,
  revertFor: tunRevert,
}

/** The tun probe for a given platform (tests). */
export const probeTunOn = (platform: NodeJS.Platform) => (exec: Executor, opts: ProbeOptions = {}) => probeTun(exec, opts, platform)

/** Whether some `ip rule` of these families already looks up `table` (see helper-server). */
export async function tunTableInUse(exec: Executor, table: number, families: ReadonlyArray<4 | 6>): Promise<boolean> {
  for (const f of families) {
    const r = await exec.run(ip(f, 'rule', 'show'))
    if (r.code === 0 && new RegExp(`\\blookup ${table}\\b`).test(r.stdout)) return true
  }
  return false
}

/** Read-only listings the leftover scan needs (run side by side). */
export const TUN_SCAN_ARGV: readonly string[][] = [
  ['ip', '-o', 'link', 'show'],
  ip(4, 'rule', 'show'),
  ip(6, 'rule', 'show'),
  ip(4, 'route', 'show', 'table', 'all'),
  ip(6, 'route', 'show', 'table', 'all'),
]

/** A leftover of the tun backend: a device (id known) or a table without a device (id unknown). */
export interface TunLeftover {
  readonly id?: string
  readonly table: number
  readonly label: string
  readonly revert: string[][]
}

/**
 * Our leftovers in the outputs of TUN_SCAN_ARGV (same order; an undefined output = the
 * listing failed). A device counts only with name `st<id>` AND alias `subnet-tunnel-<id>`;
 * a table only in our range, and for rules only at our priority. A table whose device was
 * found is removed with it.
 */
export function parseTunLeftovers(outputs: ReadonlyArray<string | undefined>): TunLeftover[] {
  const [links, rules4, rules6, routes4, routes6] = outputs
  // Without IPv6 (`ip -6 rule show` failed) there is nothing to delete there, and trying would
  // fail with "Address family not supported" on every cleanup.
  const families: Array<4 | 6> = rules6 === undefined ? [4] : [4, 6]
  const out: TunLeftover[] = []
  const tables = new Set<number>()
  for (const line of (links ?? '').split('\n')) {
    // "12: st1a2b3c4d: <…> mtu 1500 … \    link/none \    alias subnet-tunnel-1a2b3c4d"
    const m = /^\d+:\s+(st([a-z0-9]{1,13}))(?:@\S+)?:\s.*\balias (\S+)\s*$/.exec(line.trim())
    if (!m || m[3] !== OBJECT_PREFIX + m[2]) continue
    const table = tunTable(m[2])
    tables.add(table)
    out.push({ id: m[2], table, label: `tun link ${m[1]}`, revert: tunRevert(m[2], families) })
  }
  const orphan = new Set<number>()
  for (const text of [rules4, rules6]) {
    for (const line of (text ?? '').split('\n')) {
      const m = /^(\d+):\s.*\blookup (\d+)\b/.exec(line.trim())
      if (m && Number(m[1]) === TUN_RULE_PRIORITY && isTunTable(Number(m[2]))) orphan.add(Number(m[2]))
    }
  }
  for (const text of [routes4, routes6]) {
    for (const line of (text ?? '').split('\n')) {
      const m = /\btable (\d+)\b/.exec(line)
      if (m && isTunTable(Number(m[1]))) orphan.add(Number(m[1]))
    }
  }
  for (const t of [...orphan].sort((a, b) => a - b)) {
    if (tables.has(t)) continue
    out.push({ table: t, label: `routing table ${t}`, revert: tableRevert(t, families) })
  }
  return out
}
