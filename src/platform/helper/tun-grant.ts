/**
 * The tun grant. Method `tun` gives more than a redirect: the device's owner reads every packet
 * the kernel routes into it — any protocol, from every local user and from forwarded hosts —
 * and writes packets that the kernel takes as arriving from the routed networks. The ordinary
 * sudoers rule for the helper must not give that, so:
 *
 *  - The helper applies tun only when started with TUN_GRANT_FLAG in its argv. sudo compares a
 *    command's arguments exactly, so the ordinary line (`<node> <helper-main.js>`) does not
 *    match `<node> <helper-main.js> --allow-tun`: an admin grants tun with a second line that
 *    names the flag (`subnet-tunnel sudoers` prints it, commented out). The main process passes
 *    the flag only for --method tun. Root needs it too: argv is what sudoers controls, while
 *    "is the caller really root" cannot be read reliably from the environment (a root shell
 *    from `sudo -s` keeps SUDO_UID; doas and pkexec do not set it).
 *  - Even with the grant, a device owned by a user other than root may not take a default route
 *    or a large share of the address space: every routed network at least /8 (IPv4) or /16
 *    (IPv6), and all of them together at most two /8s (two /16s) — room for all of RFC 1918.
 *    Splitting 0/0 into 256 /8s does not get around it. A device owned by root (the whole
 *    tunnel run as root) may route anything: no user can read it.
 */
import ipaddr from 'ipaddr.js'
import { formatCidr, hostCidr, type Cidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import type { CaptureSpec } from '../firewall/types'

/** The helper argv flag that grants method tun. */
export const TUN_GRANT_FLAG = '--allow-tun'

/** Shortest prefix a non-root device owner may route, per family. */
export const TUN_MIN_PREFIX: Record<4 | 6, number> = { 4: 8, 6: 16 }
/** Most addresses a non-root device owner may route, per family: two of the shortest prefix. */
export const TUN_MAX_ADDRESSES: Record<4 | 6, bigint> = { 4: 2n << 24n, 6: 2n << 112n }

/** What the helper knows about how it was started. */
export interface TunGrant {
  /** Started with TUN_GRANT_FLAG. */
  readonly allowTun: boolean
}

/**
 * The helper's own argv (after `node helper-main.js`): nothing, or TUN_GRANT_FLAG. Anything
 * else is refused rather than ignored: a sudoers line with wildcards must not smuggle options.
 */
export function parseHelperArgv(argv: readonly string[]): TunGrant {
  if (argv.length === 0) return { allowTun: false }
  if (argv.length === 1 && argv[0] === TUN_GRANT_FLAG) return { allowTun: true }
  throw new TunnelError('USAGE', `helper: unexpected arguments ${JSON.stringify(argv)}`, { hint: `the only option is ${TUN_GRANT_FLAG}` })
}

function toBigInt(address: string): bigint {
  return ipaddr.parse(address).toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n)
}

/** Number of addresses in the union of the networks of one family (nested ones count once). */
export function coveredAddresses(cidrs: readonly Cidr[], family: 4 | 6): bigint {
  const bits = family === 4 ? 32n : 128n
  const ranges = cidrs
    .filter((c) => c.family === family)
    .map((c) => {
      const start = toBigInt(c.address)
      return { start, end: start + (1n << (bits - BigInt(c.prefix))) }
    })
    // by start, the larger first when two start together
    .sort((a, b) => (a.start !== b.start ? (a.start < b.start ? -1 : 1) : a.end > b.end ? -1 : a.end < b.end ? 1 : 0))
  // Two CIDRs are nested or disjoint: in this order, a range starting before the end of the
  // last one kept lies inside it.
  let total = 0n
  let end = -1n
  for (const r of ranges) {
    if (r.start < end) continue
    total += r.end - r.start
    end = r.end
  }
  return total
}

/**
 * Throws unless this helper may apply `spec` with method tun (see the module comment). Pure:
 * run before anything is journalled or executed.
 */
export function checkTunGrant(spec: CaptureSpec, grant: TunGrant): void {
  if (!grant.allowTun) {
    throw new TunnelError('HELPER', `tun: not granted (the helper was started without ${TUN_GRANT_FLAG})`, {
      hint: 'method tun needs its own sudoers line: see `subnet-tunnel sudoers`, or run subnet-tunnel as root',
    })
  }
  if (spec.tunOwner === 0) return
  const hint = 'a default route or a network this wide through tun needs the whole tunnel to run as root (sudo subnet-tunnel …); or use --method nft/nat'
  // Captured nameservers are routed into the device too (host routes).
  const routed = [...spec.include, ...(spec.dns?.servers ?? []).map((s) => hostCidr(s))]
  for (const c of routed) {
    if (c.prefix < TUN_MIN_PREFIX[c.family]) {
      throw new TunnelError('HELPER', `tun: ${formatCidr(c)} is wider than /${TUN_MIN_PREFIX[c.family]}: the device's owner (uid ${spec.tunOwner}) would read every local user's traffic to it`, { hint })
    }
  }
  for (const f of [4, 6] as const) {
    if (coveredAddresses(routed, f) > TUN_MAX_ADDRESSES[f]) {
      throw new TunnelError('HELPER', `tun: the IPv${f} networks together are larger than two /${TUN_MIN_PREFIX[f]}s: the device's owner (uid ${spec.tunOwner}) would read every local user's traffic to them`, { hint })
    }
  }
}
