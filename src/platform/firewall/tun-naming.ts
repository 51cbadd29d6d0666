/**
 * Names of the tun backend's kernel objects, all derived from the instance id so that a revert
 * (and cleanup of a dead instance) needs nothing else: the link `st<id>`, the routing table
 * 0x53000000 + 24 bits of FNV-1a(id), and the `ip rule`s at priority 5354 (see tun.ts).
 */
import { TunnelError } from '../../errors'
import { INSTANCE_ID_RE } from './naming'
import { exemptGotosRevert, exemptTargetRevert } from './tun-exempt'

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

export function ip(family: 4 | 6, ...args: string[]): string[] {
  return ['ip', `-${family}`, ...args]
}

/**
 * How many `ip rule`s of one table each family has (default 1): --owner-only adds a second one
 * for IPv4 (the reverse-path rule, tun.ts). `ip rule del` removes one rule per run, so the
 * revert runs it that many times.
 */
export type RuleCounts = Partial<Record<4 | 6, number>>

/** The rules and table of one table number, all families (leftover scan, revert). */
export function tableRevert(table: number, families: ReadonlyArray<4 | 6>, rules: RuleCounts = {}): string[][] {
  const t = String(table)
  const out: string[][] = []
  for (const f of families) {
    for (let i = 0; i < (rules[f] ?? 1); i++) out.push(ip(f, 'rule', 'del', 'priority', String(TUN_RULE_PRIORITY), 'lookup', t))
    out.push(ip(f, 'route', 'flush', 'table', t))
  }
  return out
}

/**
 * The argv that undo an instance, from its id and families alone (also for stale journal
 * entries): rules first (traffic stops going to the table), then the table, then split DNS's
 * exemption when it had one (the gotos of `exemptPorts` and the device's nop target:
 * tun-exempt.ts), then the link.
 */
export function tunRevert(instanceId: string, families: ReadonlyArray<4 | 6>, rules: RuleCounts = {}, exemptPorts: readonly number[] = []): string[][] {
  const dev = tunDeviceName(instanceId)
  const exempt = exemptPorts.length > 0 ? [...exemptGotosRevert(families, exemptPorts), ...exemptTargetRevert(dev, families)] : []
  return [...tableRevert(tunTable(instanceId), families, rules), ...exempt, ['ip', 'link', 'del', 'dev', dev]]
}
