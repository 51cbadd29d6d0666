/**
 * The `tun` backend: no firewall rules at all. The privileged helper creates a persistent TUN
 * device owned by the calling user, gives it an address, and routes exactly the tunnelled
 * networks into it with policy routing; the unprivileged main process then opens the device
 * (os/tun-device.ts) and runs a packet engine on it. Root never touches a packet.
 *
 * Kernel objects, all named from the instance id (tun-naming.ts): the link `st<id>` (alias
 * `subnet-tunnel-<id>`, which the leftover scan requires), a routing table with `<include> dev
 * st<id>` per network and captured nameserver and `throw <exclude>` per overlapping exclude
 * (the lookup then falls through to main), and one `ip rule` per family at priority 5354:
 * after `local`, so this machine's addresses never go into the device, and before `main`.
 * Addresses 169.254.77.1/30 and fd7a:5354::1/126 only serve as the source for packets routed
 * into the device; the same address on two devices is allowed. Gateway mode needs nothing
 * extra: forwarded traffic follows the same rule.
 *
 * --owner-only and exec --only change only the `ip rule` (tunRuleSelectors): by uid, or by the
 * mark a small firewall part gives the command's packets (tun-only.ts).
 *
 * The device's owner writes packets the kernel takes as received from the routed networks, so
 * before the device is up (owner not root): rp_filter=1 (strict) on it for IPv4, and for IPv6
 * either no IPv6 at all or no router advertisements and redirects (docs/design-notes.md).
 */
import { cidrsOverlap, formatCidr, hostCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { assertScope, revertScopeOf } from './capture-scope'
import { assertDnsCapture, exemptPorts } from './dns-capture'
import { firstLine } from './executor'
import { includedFamilies, OBJECT_PREFIX, orderedRules } from './naming'
import { ip, isUid, TUN_ADDR, TUN_MAX_ID, TUN_MTU, TUN_RULE_PRIORITY, tunDeviceName, tunRevert, tunTable } from './tun-naming'
import { srcValidMarkSysctl, tunMark, tunOnlyApply, tunOnlyRevert, tunOnlyScope, unroutedIncludes } from './tun-only'
import { tunExemptApply } from './tun-exempt'
import { parseTunLeftovers, rpFilterAll, TUN_SCAN_ARGV, tunTableInUse } from './tun-scan'
import type { CaptureSpec, Executor, Firewall, LearnSteps, Plan, PreflightContext, ProbeOptions, ProbeResult } from './types'

/** Checks the parts of a tun spec that end up in argv. */
function assertTunSpec(spec: CaptureSpec): void {
  tunDeviceName(spec.instanceId)
  if (!isUid(spec.tunOwner)) {
    throw new TunnelError('INTERNAL', `tun: invalid device owner ${String(spec.tunOwner)}`)
  }
  assertScope(spec)
  if (spec.cgroup !== undefined && spec.cgroupMatch === undefined) throw new TunnelError('INTERNAL', 'tun: exec --only needs a cgroup match (nft or iptables)')
  // Servers become host routes, exempt ports rule selectors (tun-exempt.ts).
  if (spec.dns) assertDnsCapture(spec.dns)
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
  const only = tunOnlyScope(spec)
  // exec --only: the mark part before the rule that routes by it (tun-only.ts).
  if (only) apply.push(srcValidMarkSysctl(dev), ...tunOnlyApply({ ...spec, ...only }, families))
  // Split DNS: our forwarder's queries skip those rules (tun-exempt.ts); in place before them.
  apply.push(...tunExemptApply(spec, dev))
  for (const f of families) {
    for (const sel of tunRuleSelectors(spec, f)) apply.push(ip(f, 'rule', 'add', 'priority', String(TUN_RULE_PRIORITY), ...sel, 'lookup', table))
  }
  return { apply, revert: tunInstanceRevert(spec.instanceId, families, spec, spec.dns ? exemptPorts(spec.dns) : []) }
}

/**
 * The selectors of the instance's `ip rule`s in one family (the revert's `rule del … lookup T`
 * matches each whatever its selector, one per run: tunInstanceRevert counts them the same way):
 *  - exec --only: `fwmark M`, the mark tun-only.ts gives the cgroup's packets;
 *  - --owner-only: `uidrange U-U` (the routing lookup carries the socket's uid), and for IPv4
 *    `from 169.254.77.1 uidrange 0-0`: the kernel checks a reply's source (strict rp_filter, the
 *    device of a non-root owner) with a lookup that carries uid 0, not the owner's, so without
 *    it that lookup went to main and every reply was dropped. Only such checks, packets without
 *    a socket (the kernel's own resets to the device) and root, who may send anything, carry
 *    uid 0 with that source; another user's socket bound to 169.254.77.1 carries its own uid,
 *    and a packet arriving from outside with our own address as its source is a martian. (The
 *    owner's connections get that source from the table's device route; one bound to another
 *    address of this host would still fail the check. IPv6 has no rp_filter.)
 *  - otherwise: every lookup.
 */
export function tunRuleSelectors(spec: CaptureSpec, f: 4 | 6): string[][] {
  if (spec.cgroup !== undefined) return [['fwmark', tunMark(spec.instanceId)]]
  if (spec.ownerUid === undefined) return [[]]
  const owner = ['uidrange', `${spec.ownerUid}-${spec.ownerUid}`]
  return f === 4 ? [owner, ['from', TUN_ADDR[4].split('/')[0]!, 'uidrange', '0-0']] : [owner]
}

/** The revert of an instance: its mark part (exec --only), then rules, table, split DNS's exemption and device. */
export function tunInstanceRevert(
  instanceId: string,
  families: ReadonlyArray<4 | 6>,
  scope: Pick<CaptureSpec, 'cgroup' | 'cgroupMatch' | 'ownerUid'> = {},
  exemptPorts: readonly number[] = [],
): string[][] {
  const only = tunOnlyScope(scope)
  const rules = scope.cgroup === undefined && scope.ownerUid !== undefined ? { 4: 2 } : {}
  return [...(only ? tunOnlyRevert(instanceId, families, only) : []), ...tunRevert(instanceId, families, rules, exemptPorts)]
}

async function probeTun(exec: Executor, opts: ProbeOptions, platform: NodeJS.Platform = process.platform): Promise<ProbeResult> {
  if (platform === 'darwin') {
    // macOS: the main process (as root) creates a utun itself (tunnel/tun-setup-darwin.ts); nothing
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

/**
 * --route-by-name on tun: a host route into the device in the instance's table, removed by the
 * helper when its time is up. A host route is more specific than any exclude's `throw`: the
 * helper refuses excluded addresses, so an exclude still wins.
 */
export const tunLearn: LearnSteps = {
  kernelTimeout: false,
  add: (spec, a) => [ip(a.family, 'route', 'add', formatCidr(a), 'dev', tunDeviceName(spec.instanceId), 'table', String(tunTable(spec.instanceId)))],
  remove: (spec, a) => [ip(a.family, 'route', 'del', formatCidr(a), 'dev', tunDeviceName(spec.instanceId), 'table', String(tunTable(spec.instanceId)))],
}

/** exec --only: say which includes the command cannot reach (tun-only.ts: no fallback route). */
async function warnUnrouted(spec: CaptureSpec, ctx: PreflightContext): Promise<void> {
  const none = await unroutedIncludes(ctx.exec, spec)
  if (none.length === 0) return
  ctx.warn(`tun: exec --only: this host has no route to ${none.join(', ')} outside the tunnel, so the command's connections there fail with "Network is unreachable" before they can be marked; add a route (a default route will do)`)
}

/** The TUN backend (routes, no firewall). */
export const tunFirewall: Firewall = {
  name: 'tun',
  capture: 'device',
  guardsDns: false,
  maxIdLength: TUN_MAX_ID,
  probe: (exec: Executor, opts: ProbeOptions = {}) => probeTun(exec, opts),
  plan: tunPlan,
  async preflight(spec, ctx) {
    // Two ids whose hashes collide would share a table, and the failed apply's revert would
    // delete the other instance's rule and routes: refuse a table some rule already uses.
    if (await tunTableInUse(ctx.exec, tunTable(spec.instanceId), includedFamilies(spec))) {
      throw new TunnelError('HELPER', `tun: routing table ${tunTable(spec.instanceId)} is already in use`, {
        hint: 'start again: instance ids are random',
      })
    }
    if (spec.cgroup !== undefined) await warnUnrouted(spec, ctx)
    // A loose rp_filter on `all` overrides the strict one the plan sets on the device (the
    // kernel uses the maximum): worth a warning.
    if (spec.tunOwner !== 0 && (await rpFilterAll(ctx.exec)) === 2) {
      ctx.warn(`tun: net.ipv4.conf.all.rp_filter is 2 (loose), which overrides the strict source check on ${tunDeviceName(spec.instanceId)}: its owner can inject packets with any source address this host has a route to`)
    }
  },
  revert: (r) => tunInstanceRevert(r.id, r.families, r, revertScopeOf(r).dnsExemptPorts),
  async leftovers(exec) {
    const listed = await Promise.all(TUN_SCAN_ARGV.map((argv) => exec.run(argv)))
    return parseTunLeftovers(listed.map((r) => (r.code === 0 ? r.stdout : undefined))).map((o) => ({
      id: o.id ?? '',
      label: o.label,
      revert: o.revert,
      // A live instance owns the table its id hashes to, even when the scan found no device.
      ownedBy: o.ownedBy ?? ((id: string) => tunTable(id) === o.table),
    }))
  },
  objectName: tunDeviceName,
  learn: tunLearn,
}

/** The tun probe for a given platform (tests). */
export const probeTunOn = (platform: NodeJS.Platform) => (exec: Executor, opts: ProbeOptions = {}) => probeTun(exec, opts, platform)
