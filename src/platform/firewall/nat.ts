/**
 * The `nat` backend: iptables + ip6tables REDIRECT in the nat table's OUTPUT hook.
 *
 * Layout per family: our own chain `subnet-tunnel-<id>` holding the rules, and exactly one jump
 * `-I OUTPUT 1 -j subnet-tunnel-<id>` into it. Teardown deletes the jump, flushes and deletes the
 * chain, so it removes exactly what we added and nothing of another instance. The jump matches
 * every protocol (DNS capture needs UDP) and is the same for every spec, so the revert can be
 * rebuilt from the instance id alone; the chain itself sends non-TCP back early. (The nat table
 * only sees the first packet of each connection, so this costs one rule per new flow.)
 *
 * With `gateway` a second jump, `-I PREROUTING 1 [-i IFACE] [-s CIDR] -j subnet-tunnel-<id>`
 * (one per served interface × source network), sends traffic arriving from other hosts through
 * the same chain. With `ownerUid` the OUTPUT jump carries `-m owner --uid-owner UID`: the owner
 * match is only valid in OUTPUT, so it goes on the jump, not into the chain PREROUTING shares.
 * With the DNS guard (capture-scope.ts) a chain of the same name in the FILTER table, jumped to
 * from INPUT, drops packets to the DNS interceptor's ports that were not redirected. The revert
 * deletes exactly these jumps, so it depends on the scope: the journal records it, and a stale
 * entry written before these options existed (`gateway: true` at most) is reverted as before.
 *
 * iptables-nft vs iptables-legacy: both work. Whichever `iptables` resolves to, we use the same
 * binary for apply, revert and the leftover scan (`-S`), so we always look at the ruleset we
 * wrote into. Both kinds of rules can coexist in one kernel and are both evaluated, so a system
 * whose other rules live in the other flavour does not break redirection. `-w` waits for the
 * xtables lock (legacy) and is accepted and ignored by iptables-nft.
 */
import { type Cidr, formatCidr } from '../../config/cidr'
import { gatewayJumpMatches, needsDnsGuard, revertScopeOf } from './capture-scope'
import { conntrackFlushArgv, DNS_PORT, dnsServersOf, exemptPorts, interceptorPorts } from './dns-capture'
import { redirectedFlowsFlushArgv, staleFlowsBeforeApply } from './stale-flows'
import { firstLine } from './executor'
import { assertSpec, includedFamilies, OBJECT_NAME_RE, objectName, orderedRules } from './naming'
import type { CaptureSpec, Executor, Firewall, KernelObject, LearnSteps, Plan, ProbeOptions, ProbeResult, RevertScope } from './types'

const BIN: Record<4 | 6, string> = { 4: 'iptables', 6: 'ip6tables' }
/** Loopback is LOCAL anyway; listed explicitly so the intent survives odd routing tables. */
const LOOPBACK: Record<4 | 6, string> = { 4: '127.0.0.0/8', 6: '::1/128' }
/** Where REDIRECT in OUTPUT sends packets: the primary loopback address. */
const REDIRECT_TARGET: Record<4 | 6, string> = { 4: '127.0.0.1/32', 6: '::1/128' }
const PROTOS = ['udp', 'tcp'] as const

function ipt(family: 4 | 6, ...args: string[]): string[] {
  return [BIN[family], '-w', '-t', 'nat', ...args]
}

/** The same in the filter table (the DNS guard). */
function iptFilter(family: 4 | 6, ...args: string[]): string[] {
  return [BIN[family], '-w', '-t', 'filter', ...args]
}

/**
 * `-m owner --uid-owner UID` and/or `-m cgroup --path P` (exec --only) for the OUTPUT jump, or
 * nothing. The kernel resolves the cgroup path itself, wherever cgroup v2 is mounted.
 */
function ownerMatch(scope: RevertScope): string[] {
  return [
    ...(scope.ownerUid === undefined ? [] : ['-m', 'owner', '--uid-owner', String(scope.ownerUid)]),
    ...(scope.cgroup === undefined ? [] : ['-m', 'cgroup', '--path', scope.cgroup]),
  ]
}

/**
 * The argv that undo an instance's rules, from its id, families and scope alone (also used for
 * stale journal entries): every jump must be deleted exactly as it was inserted, since a chain
 * that still has a jump into it cannot be deleted. An empty scope is the plan of an instance
 * without gateway, owner or guard — what entries written before these options existed mean.
 */
export function natRevert(instanceId: string, families: ReadonlyArray<4 | 6>, scope: RevertScope = {}): string[][] {
  const chain = objectName(instanceId)
  const out: string[][] = []
  for (const f of families) {
    out.push(ipt(f, '-D', 'OUTPUT', ...ownerMatch(scope), '-j', chain))
    if (scope.gateway) for (const m of gatewayJumpMatches(scope, f)) out.push(ipt(f, '-D', 'PREROUTING', ...m, '-j', chain))
    out.push(ipt(f, '-F', chain))
    out.push(ipt(f, '-X', chain))
    if (scope.dnsGuard) {
      out.push(iptFilter(f, '-D', 'INPUT', '-j', chain))
      out.push(iptFilter(f, '-F', chain))
      out.push(iptFilter(f, '-X', chain))
    }
  }
  return out
}

/** Pure: the argv that install the capture rules of `spec` (one family at a time, v4 first). */
export function natPlan(spec: CaptureSpec): Plan {
  assertSpec(spec)
  const chain = objectName(spec.instanceId)
  const port = String(spec.listenPort)
  const families = includedFamilies(spec)
  const guard = needsDnsGuard(spec)
  const apply: string[][] = []
  for (const f of families) {
    // The guard first: from the moment anything is redirected, only redirected packets reach
    // the interceptor.
    if (guard) apply.push(...dnsGuardRules(spec, f, chain))
    apply.push(ipt(f, '-N', chain))
    apply.push(...dnsRules(spec, f, chain))
    // Past the DNS rules only TCP is redirected, and never to this machine itself (its own
    // addresses, loopback).
    apply.push(ipt(f, '-A', chain, '!', '-p', 'tcp', '-j', 'RETURN'))
    apply.push(ipt(f, '-A', chain, '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'RETURN'))
    apply.push(ipt(f, '-A', chain, '-d', LOOPBACK[f], '-j', 'RETURN'))
    for (const r of orderedRules(spec, f)) {
      const dst = formatCidr(r.cidr)
      apply.push(
        r.action === 'return'
          ? ipt(f, '-A', chain, '-d', dst, '-j', 'RETURN')
          : ipt(f, '-A', chain, '-d', dst, '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', port),
      )
    }
    // The jump goes in last: until then the chain is unreachable, so a half-built chain never
    // redirects anything. --owner-only: only the owner's packets take it.
    apply.push(ipt(f, '-I', 'OUTPUT', '1', ...ownerMatch(spec), '-j', chain))
    // Gateway mode: the same chain also sees what arrives from other hosts (containers on a
    // bridge, VMs, a LAN) — from the served interfaces and source networks only. Its rules
    // work unchanged there: `--dst-type LOCAL` keeps the host's own services reachable, and
    // REDIRECT in PREROUTING sends to the primary address of the incoming interface (not
    // 127.0.0.1, so no route_localnet), hence the listener must be bound to 0.0.0.0 / ::. The
    // exempt-source-port RETURNs only ever concern our own forwarder's local packets; in
    // PREROUTING they are harmless.
    if (spec.gateway) {
      for (const m of gatewayJumpMatches(spec, f)) apply.push(ipt(f, '-I', 'PREROUTING', '1', ...m, '-j', chain))
    }
  }
  return { apply, revert: natRevert(spec.instanceId, families, { ...spec, dnsGuard: guard }) }
}

/**
 * The DNS guard of one family (see capture-scope.ts): in the filter table's INPUT hook, UDP and
 * TCP to the interceptor's ports that conntrack did not DNAT (REDIRECT is a DNAT) are dropped —
 * a query sent there directly, by a neighbour or by another local user, never gets an answer.
 */
function dnsGuardRules(spec: CaptureSpec, f: 4 | 6, chain: string): string[][] {
  return [
    iptFilter(f, '-N', chain),
    ...interceptorPorts(spec.dns!).flatMap((port) => PROTOS.map((proto) => iptFilter(f, '-A', chain, '-p', proto,
      '--dport', String(port), '-m', 'conntrack', '!', '--ctstate', 'DNAT', '-j', 'DROP'))),
    iptFilter(f, '-I', 'INPUT', '1', '-j', chain),
  ]
}

/**
 * DNS capture rules of one family, which must come before the "local destination" and loopback
 * returns: a stub resolver at 127.0.0.53 (or dnsmasq at 127.0.0.1) IS a local address.
 *  1. our forwarder's source ports → RETURN: its queries to the original resolvers go out as
 *     they are, so there is no loop;
 *  2. the interceptor's own address and port → RETURN: a packet that already goes there is
 *     never redirected again (matters when the interceptor itself listens on port 53);
 *  3. gateway: UDP and TCP to each nameserver's port 53 from a source that is not this machine's
 *     (what PREROUTING sees) → REDIRECT to the interceptor's gateway port, which the kernel
 *     rewrites to the incoming interface's address. The chain is shared by both hooks; the
 *     source type tells them apart (a packet from outside with one of our addresses as its
 *     source is a martian the kernel drops anyway);
 *  4. UDP and TCP to each nameserver's port 53 → REDIRECT to the interceptor. In OUTPUT the
 *     kernel rewrites the destination to 127.0.0.1 / ::1 (no route_localnet needed) and conntrack
 *     rewrites the replies' source back to server:53, so clients accept them — which needs the
 *     replies to come from 127.0.0.1 / ::1: hence a socket bound there, on a port of its own.
 */
function dnsRules(spec: CaptureSpec, f: 4 | 6, chain: string): string[][] {
  if (!spec.dns) return []
  const dns = spec.dns
  const port = String(dns.port)
  const out: string[][] = []
  for (const p of exemptPorts(dns)) {
    for (const proto of PROTOS) out.push(ipt(f, '-A', chain, '-p', proto, '--sport', String(p), '-j', 'RETURN'))
  }
  for (const proto of PROTOS) {
    out.push(ipt(f, '-A', chain, '-d', REDIRECT_TARGET[f], '-p', proto, '--dport', port, '-j', 'RETURN'))
  }
  const redirect = (to: number, ...match: string[]): void => {
    for (const server of dnsServersOf(dns, f)) {
      for (const proto of PROTOS) {
        out.push(ipt(f, '-A', chain, '-d', server, '-p', proto, '--dport', String(DNS_PORT), ...match,
          '-j', 'REDIRECT', '--to-ports', String(to)))
      }
    }
  }
  if (dns.gatewayPort !== undefined) redirect(dns.gatewayPort, '-m', 'addrtype', '!', '--src-type', 'LOCAL')
  redirect(dns.port)
  return out
}

async function probeFamily(exec: Executor, f: 4 | 6): Promise<ProbeResult> {
  const r = await exec.run(ipt(f, '-L', 'OUTPUT', '-n'))
  if (r.code === 0) return { ok: true }
  if (r.code === 127) {
    return { ok: false, why: `${BIN[f]} not found`, hint: 'install iptables (apt-get install iptables)' }
  }
  return {
    ok: false,
    why: `${BIN[f]} nat table unusable: ${firstLine(r.stderr) || `exit ${r.code}`}`,
    hint: 'the kernel may lack the nat table (modprobe iptable_nat / nf_nat), or try --method nft',
  }
}

/**
 * Our chains in `iptables -t <table> -S` output, each with argv that delete every jump to it
 * (`-A X … -j subnet-tunnel-id` → `-D X …`), then flush and delete it.
 */
export function parseIptablesS(bin: 'iptables' | 'ip6tables', text: string, table: 'nat' | 'filter' | 'mangle' = 'nat'): KernelObject[] {
  const lines = text.split('\n').map((l) => l.trim())
  const out: KernelObject[] = []
  for (const line of lines) {
    const m = /^-N (\S+)$/.exec(line)
    const id = m && OBJECT_NAME_RE.exec(m[1])?.[1]
    if (!m || !id) continue
    const chain = m[1]
    const revert: string[][] = []
    for (const jump of lines) {
      const t = jump.split(/\s+/)
      // Only simple jump lines (no quoted comments) are re-issued as -D: they split exactly.
      if (t[0] === '-A' && t[t.length - 2] === '-j' && t[t.length - 1] === chain && !jump.includes('"')) {
        revert.push([bin, '-w', '-t', table, '-D', ...t.slice(1)])
      }
    }
    revert.push([bin, '-w', '-t', table, '-F', chain], [bin, '-w', '-t', table, '-X', chain])
    out.push({ id, label: `${bin} ${table} ${chain}`, revert })
  }
  return out
}

/** Our chains in iptables and ip6tables, nat table and filter table (the DNS guard); read-only. */
async function natLeftovers(exec: Executor): Promise<KernelObject[]> {
  const tables = [['iptables', 'nat'], ['ip6tables', 'nat'], ['iptables', 'filter'], ['ip6tables', 'filter']] as const
  const listed = await Promise.all(tables.map(([bin, t]) => exec.run([bin, '-w', '-t', t, '-S'])))
  return listed.flatMap((r, i) => (r.code === 0 ? parseIptablesS(tables[i]![0], r.stdout, tables[i]![1]) : []))
}

/**
 * --route-by-name on iptables: one rule per learnt address, appended to our chain (after every
 * exclude's RETURN, so an exclude still wins) and deleted by the helper when its time is up.
 * (ipset would give kernel timeouts, but is one more tool and kernel module to require; the
 * helper bounds the count, so the chain stays short.)
 */
export const natLearn: LearnSteps = {
  kernelTimeout: false,
  add: (spec, a) => [ipt(a.family, '-A', objectName(spec.instanceId), ...learntMatch(spec, a))],
  remove: (spec, a) => [ipt(a.family, '-D', objectName(spec.instanceId), ...learntMatch(spec, a))],
}

function learntMatch(spec: CaptureSpec, a: Cidr): string[] {
  return ['-d', formatCidr(a), '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(spec.listenPort)]
}

/** The iptables/ip6tables REDIRECT backend. */
export const natFirewall: Firewall = {
  name: 'nat',
  capture: 'listener',
  originalDst: 'socket',
  guardsDns: true,
  async probe(exec: Executor, opts: ProbeOptions = {}): Promise<ProbeResult> {
    const v4 = await probeFamily(exec, 4)
    if (!v4.ok || !opts.ipv6) return v4
    return probeFamily(exec, 6)
  },
  plan: natPlan,
  revert: (r) => natRevert(r.id, r.families, revertScopeOf(r)),
  leftovers: natLeftovers,
  flushAfter: (spec) => conntrackFlushArgv(spec.dns),
  flushBefore: (spec) => staleFlowsBeforeApply(spec),
  flushAfterRevert: (spec) => redirectedFlowsFlushArgv(spec.include, spec.listenPort),
  objectName,
  learn: natLearn,
}
