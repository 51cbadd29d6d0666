/**
 * Stale redirected TCP flows. The kernel decides NAT on a flow's first packet and keeps the
 * decision in conntrack (SYN_SENT 2 min, ESTABLISHED days). A transparent proxy that died —
 * a previous instance of ours killed with -9, sshuttle crashing under load — leaves entries
 * whose REDIRECT points at its dead listener. A client that reuses such a source port (a
 * connection storm does: thousands of ports, reused at once with tcp_tw_reuse) matches the old
 * entry, is sent to the dead port and refused, however right the new rules are: the bench saw
 * 4,541 of 10,000 connections fail that way after sshuttle crashed.
 *
 * Before our rules go in, the helper forgets the redirected flows (reply source loopback: a
 * REDIRECT of this host's own connections) to the networks we capture: none is ours yet, and a
 * live one of another proxy on the same networks would lose them to us anyway. After our
 * revert, it forgets ours (reply source port = our listener). Live flows are never touched
 * while we run: deleting a live entry can break its connection (a mid-stream packet then
 * starts a new entry without the NAT). Best effort, like the DNS flush (dns-capture.ts).
 * Gateway mode's forwarded flows (REDIRECT to the LAN address) are left to expire.
 *
 * Scoped captures (--owner-only, exec --only) skip the flush before apply: conntrack cannot tell
 * whose flow it is, and another user's proxy flows are not ours to take when our rules do not
 * capture that user (stale ones of the owner then expire as before).
 */
import ipaddr from 'ipaddr.js'
import type { Cidr } from '../../config/cidr'
import type { CaptureSpec } from './types'

const LOOPBACK = { 4: '127.0.0.1', 6: '::1' } as const

/** The netmask of a prefix length, as conntrack's --mask-dst takes it. */
export function prefixMask(c: Cidr): string {
  return (c.family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).subnetMaskFromPrefixLength(c.prefix).toString()
}

/** conntrack -D of the redirected TCP flows to `include`; `listenPort`: only those to that port. */
export function redirectedFlowsFlushArgv(include: readonly Cidr[], listenPort?: number): string[][] {
  return include.map((c) => [
    'conntrack', '-D', '-f', c.family === 4 ? 'ipv4' : 'ipv6', '-p', 'tcp',
    '--orig-dst', c.address, '--mask-dst', prefixMask(c),
    '--reply-src', LOOPBACK[c.family],
    ...(listenPort === undefined ? [] : ['--reply-port-src', String(listenPort)]),
  ])
}

/** The flush before apply: every user's stale redirects, only when our capture covers every user. */
export function staleFlowsBeforeApply(spec: Pick<CaptureSpec, 'include' | 'ownerUid' | 'cgroup'>): string[][] {
  return spec.ownerUid === undefined && spec.cgroup === undefined ? redirectedFlowsFlushArgv(spec.include) : []
}
