/**
 * The `nft` backend: one `inet` table `subnet-tunnel-<id>` (IPv4 and IPv6 together) with a nat
 * chain on the output hook. Teardown is a single `nft delete table`, which removes exactly our
 * objects whatever state they are in.
 *
 * Apply is ONE nft invocation: nft joins its argv into one command buffer, and all commands of
 * a buffer (separated by ';') go to the kernel as one netlink batch — a transaction. So either
 * every rule is in place or none is (verified: a bad prefix in the last rule leaves no table),
 * and 4096 CIDRs cost one process instead of 4096. No shell and no stdin are involved: ';', '{'
 * and '}' are plain argv tokens. `create table` (not `add`) fails if the table already exists,
 * so we never append to a leftover of an instance that happened to have the same id.
 *
 * With `gateway` the table gets a second chain, `prerouting`, with the same capture rules for
 * traffic that arrives from other hosts, behind returns for every interface and source network
 * it does not serve. With `ownerUid` the output chain first returns every packet of another
 * uid. With the DNS guard (capture-scope.ts) a filter chain `input` drops packets to the DNS
 * interceptor's ports that were not redirected. The revert is always the same `delete table`.
 */
import { formatCidr } from '../../config/cidr'
import { disjointSources, needsDnsGuard } from './capture-scope'
import { conntrackFlushArgv, DNS_PORT, dnsServersOf, exemptPorts, interceptorPorts } from './dns-capture'
import { redirectedFlowsFlushArgv, staleFlowsBeforeApply } from './stale-flows'
import { firstLine } from './executor'
import { assertSpec, includedFamilies, OBJECT_NAME_RE, objectName, orderedRules } from './naming'
import type { Cidr } from '../../config/cidr'
import { MAX_LEARNT } from '../../config/learn-limits'
import type { CaptureSpec, Executor, Firewall, KernelObject, LearnSteps, Plan, ProbeResult } from './types'

const DADDR: Record<4 | 6, string[]> = { 4: ['ip', 'daddr'], 6: ['ip6', 'daddr'] }
const NFPROTO: Record<4 | 6, string> = { 4: 'ipv4', 6: 'ipv6' }
const LOOPBACK: Record<4 | 6, string> = { 4: '127.0.0.0/8', 6: '::1/128' }
/** Where `redirect` in the output hook sends packets: the primary loopback address. */
const REDIRECT_TARGET: Record<4 | 6, string> = { 4: '127.0.0.1', 6: '::1' }
const PROTOS = ['udp', 'tcp'] as const
/** --route-by-name: the sets of learnt addresses, and their element types. */
const LEARNT_SET: Record<4 | 6, string> = { 4: 'learnt4', 6: 'learnt6' }
const SET_TYPE: Record<4 | 6, string> = { 4: 'ipv4_addr', 6: 'ipv6_addr' }

/** One learnt address in or out of its family's set (`{ ADDR timeout Ns }`). */
function learntElement(spec: CaptureSpec, verb: 'add' | 'delete', address: Cidr, ttlS?: number): string[] {
  const element = ttlS === undefined ? address.address : `${address.address} timeout ${ttlS}s`
  return [verb, 'element', 'inet', objectName(spec.instanceId), LEARNT_SET[address.family], '{', element, '}']
}

/** --route-by-name on nft: set elements with kernel timeouts. */
export const nftLearn: LearnSteps = {
  kernelTimeout: true,
  add: (spec, a, ttl) => [batch([learntElement(spec, 'add', a, ttl)])],
  // Adding an element that exists keeps its old timeout: delete and add in one transaction;
  // if it expired in between, the delete fails the whole batch, and the plain add follows.
  refresh: (spec, a, ttl) => [[batch([learntElement(spec, 'delete', a), learntElement(spec, 'add', a, ttl)])], [batch([learntElement(spec, 'add', a, ttl)])]],
  remove: (spec, a) => [batch([learntElement(spec, 'delete', a)])],
}

/**
 * Chain definition; priority -100 (dstnat) is where NAT on the output hook belongs, and on the
 * prerouting hook too (gateway mode: the chain is named after its hook).
 */
function chainArgs(table: string, hook: 'output' | 'prerouting' = 'output'): string[] {
  return ['add', 'chain', 'inet', table, hook,
    '{', 'type', 'nat', 'hook', hook, 'priority', '-100', ';', 'policy', 'accept', ';', '}']
}

/** Joins nft commands into one argv with ';' separators: one transaction. */
function batch(commands: string[][]): string[] {
  const argv = ['nft']
  commands.forEach((c, i) => {
    if (i > 0) argv.push(';')
    argv.push(...c)
  })
  return argv
}

/** The argv that undo an instance's table, from its id alone (also used for stale journal entries). */
export function nftRevert(instanceId: string, _families?: ReadonlyArray<4 | 6>): string[][] {
  return [['nft', 'delete', 'table', 'inet', objectName(instanceId)]]
}

/** Pure: one atomic nft invocation that creates the table, the chain and every rule. */
export function nftPlan(spec: CaptureSpec): Plan {
  assertSpec(spec)
  const table = objectName(spec.instanceId)
  const families = includedFamilies(spec)
  if (families.length === 0) return { apply: [], revert: [] }
  const cmds: string[][] = [['create', 'table', 'inet', table]]
  // --route-by-name: one set per family whose elements time out in the kernel itself; `size`
  // bounds it there too, whatever the helper is asked.
  for (const f of spec.learn?.families ?? []) {
    cmds.push(['add', 'set', 'inet', table, LEARNT_SET[f], '{', 'type', SET_TYPE[f], ';', 'flags', 'timeout', ';', 'size', String(MAX_LEARNT), ';', '}'])
  }
  if (needsDnsGuard(spec)) {
    // Only packets conntrack redirected (REDIRECT is a DNAT) reach the DNS interceptor: a query
    // sent to one of its ports directly, by a neighbour or another local user, is dropped.
    cmds.push(filterChainArgs(table))
    cmds.push(['add', 'rule', 'inet', table, 'input', 'meta', 'l4proto', '{', 'udp,tcp', '}',
      'th', 'dport', ...nftSet(interceptorPorts(spec.dns!).map(String)), 'ct', 'status', '&', 'dnat', '==', '0', 'drop'])
  }
  cmds.push(chainArgs(table))
  // --owner-only: other users' packets leave the chain at once. (A packet without a socket has
  // no uid and does not match; such packets never start a connection we would capture.)
  const owner = spec.ownerUid === undefined ? [] : [['meta', 'skuid', '!=', String(spec.ownerUid), 'return']]
  const rules = [...owner, ...captureRules(spec, families, true)]
  if (spec.cgroup === undefined) {
    cmds.push(...rules.map((r) => ['add', 'rule', 'inet', table, 'output', ...r]))
  } else {
    // exec --only: only sockets of our cgroup enter the capture rules, in a chain of their own.
    // A positive match and a jump, not `!= … return`: `socket cgroupv2 level 1` does not match
    // at all (neither == nor !=) for a socket in the root cgroup, which has no level-1 ancestor.
    // nft resolves the path under /sys/fs/cgroup when the rule is added (the cgroup exists by
    // then); a packet without a socket does not match.
    cmds.push(['add', 'chain', 'inet', table, 'only'])
    cmds.push(...rules.map((r) => ['add', 'rule', 'inet', table, 'only', ...r]))
    cmds.push(['add', 'rule', 'inet', table, 'output', 'socket', 'cgroupv2', 'level', '1', `"${spec.cgroup}"`, 'jump', 'only'])
  }
  if (spec.gateway) {
    // Gateway mode: the same capture for traffic arriving from other hosts (containers on a
    // bridge, VMs, a LAN) on the served interfaces and from the served sources, in the same
    // table, so the one `delete table` still removes it all. `fib daddr type local return`
    // keeps the host's own services reachable; `redirect` here sends to the primary address
    // of the incoming interface (no route_localnet needed), so the listener must be bound to
    // 0.0.0.0 / :: — and DNS goes to the interceptor's gateway port, bound there.
    cmds.push(chainArgs(table, 'prerouting'))
    cmds.push(...[...gatewayScopeRules(spec, families), ...captureRules(spec, families, false)]
      .map((r) => ['add', 'rule', 'inet', table, 'prerouting', ...r]))
  }
  return { apply: [batch(cmds)], revert: nftRevert(spec.instanceId) }
}

/** The DNS guard's chain: filter type on the input hook, at the usual filter priority. */
function filterChainArgs(table: string): string[] {
  return ['add', 'chain', 'inet', table, 'input', '{', 'type', 'filter', 'hook', 'input', 'priority', '0', ';', 'policy', 'accept', ';', '}']
}

/**
 * Returns for what a gateway does not serve: another interface, or a source outside the served
 * networks. `ip saddr` alone would only ever match IPv4 packets in an inet table (and so let
 * every IPv6 source through), hence one rule per family, by nfproto.
 */
function gatewayScopeRules(spec: CaptureSpec, families: ReadonlyArray<4 | 6>): string[][] {
  const out: string[][] = []
  const ifaces = spec.gatewayInterfaces
  // Names are quoted (nft strings); capture-scope.ts allows no quote or space in them.
  if (ifaces) out.push(['iifname', '!=', ...nftSet(ifaces.map((i) => `"${i}"`)), 'return'])
  if (spec.gatewaySources) {
    for (const f of families) {
      const sources = disjointSources(spec.gatewaySources, f).map(formatCidr)
      out.push(sources.length === 0
        ? ['meta', 'nfproto', NFPROTO[f], 'return']
        : [f === 4 ? 'ip' : 'ip6', 'saddr', '!=', ...nftSet(sources), 'return'])
    }
  }
  return out
}

/** One element as it is, several as an anonymous set in one token (nft joins argv with spaces). */
function nftSet(elements: readonly string[]): string[] {
  return elements.length === 1 ? [elements[0]] : ['{', elements.join(','), '}']
}

/**
 * Rule bodies of one capture chain, in order. `local`: the output hook, where our own
 * forwarder's exempt source ports matter; they are left out of prerouting, where they would
 * only let a remote client's query from such a port slip past. DNS goes to the interceptor's
 * loopback port from the output hook, to its gateway port from prerouting.
 */
function captureRules(spec: CaptureSpec, families: ReadonlyArray<4 | 6>, local: boolean): string[][] {
  const out = dnsRules(spec, families, local)
  // Past the DNS rules only TCP is redirected, and never traffic to this machine itself (its
  // addresses, loopback).
  out.push(['meta', 'l4proto', '!=', 'tcp', 'return'])
  out.push(['fib', 'daddr', 'type', 'local', 'return'])
  for (const f of families) out.push([...DADDR[f], LOOPBACK[f], 'return'])
  for (const f of families) {
    for (const r of orderedRules(spec, f)) {
      const match = [...DADDR[f], formatCidr(r.cidr)]
      // `redirect to :port` needs a transport protocol in the same rule, hence meta l4proto tcp.
      out.push(r.action === 'return'
        ? [...match, 'return']
        : [...match, 'meta', 'l4proto', 'tcp', 'redirect', 'to', `:${spec.listenPort}`])
    }
  }
  // Learnt addresses last: every exclude's return comes first, so an exclude still wins (the
  // helper refuses excluded addresses anyway).
  for (const f of spec.learn?.families ?? []) {
    out.push([...DADDR[f], `@${LEARNT_SET[f]}`, 'meta', 'l4proto', 'tcp', 'redirect', 'to', `:${spec.listenPort}`])
  }
  return out
}

/**
 * DNS capture rules (rule bodies), which must come before the "local destination" and loopback
 * returns: a stub resolver at 127.0.0.53 (or dnsmasq at 127.0.0.1) IS a local address.
 *  1. our forwarder's source ports → return (one anonymous set per protocol): its queries to the
 *     original resolvers go out as they are, so there is no loop;
 *  2. the interceptor's own address and port → return: a packet that already goes there is never
 *     redirected again (matters when the interceptor itself listens on port 53);
 *  3. UDP and TCP to each nameserver's port 53 → redirect to the interceptor. In the output hook
 *     the destination becomes 127.0.0.1 / ::1 (no route_localnet needed) and conntrack rewrites
 *     the replies' source back to server:53, so clients accept them — which needs the replies to
 *     come from 127.0.0.1 / ::1: hence a socket bound there, on a port of its own. In prerouting
 *     (`local` false, gateway) the destination becomes the incoming interface's address and the
 *     port the gateway port, where the interceptor listens on every address.
 * Rules 1 and 2 concern this machine's own packets: output hook only.
 */
function dnsRules(spec: CaptureSpec, families: ReadonlyArray<4 | 6>, local = true): string[][] {
  if (!spec.dns) return []
  const dns = spec.dns
  const port = String(local ? dns.port : dns.gatewayPort!)
  const out: string[][] = []
  const exempt = local ? exemptPorts(dns) : []
  if (exempt.length > 0) {
    // One token for the set's elements: nft joins argv with spaces, "{ 1,2 }" is a set.
    for (const proto of PROTOS) out.push([proto, 'sport', '{', exempt.join(','), '}', 'return'])
  }
  for (const f of local ? families : []) {
    for (const proto of PROTOS) out.push([...DADDR[f], REDIRECT_TARGET[f], proto, 'dport', port, 'return'])
  }
  for (const f of families) {
    for (const server of dnsServersOf(dns, f)) {
      for (const proto of PROTOS) {
        out.push([...DADDR[f], server, proto, 'dport', String(DNS_PORT), 'redirect', 'to', `:${port}`])
      }
    }
  }
  return out
}

/** Name of the throwaway table the probe creates; deliberately NOT `subnet-tunnel-*`. */
export function probeTableName(pid: number = process.pid): string {
  return `st-probe-${pid}`
}

/**
 * Usable = nft exists, can list tables, and the kernel accepts a nat chain on the output hook
 * with the expressions we use (fib, redirect). Creates and deletes a throwaway table, so run it
 * only as root and only where rules may be changed (inside the helper).
 */
async function nftProbe(exec: Executor): Promise<ProbeResult> {
  const list = await exec.run(['nft', 'list', 'tables'])
  if (list.code === 127) {
    return { ok: false, why: 'nft not found', hint: 'install nftables (apt-get install nftables)' }
  }
  if (list.code !== 0) {
    return { ok: false, why: `nft unusable: ${firstLine(list.stderr) || `exit ${list.code}`}`, hint: 'try --method nat' }
  }
  const t = probeTableName()
  const rule = (...r: string[]): string[] => ['add', 'rule', 'inet', t, 'output', ...r]
  const create = await exec.run(batch([
    ['add', 'table', 'inet', t],
    chainArgs(t),
    rule('fib', 'daddr', 'type', 'local', 'return'),
    rule('ip', 'daddr', '192.0.2.0/24', 'meta', 'l4proto', 'tcp', 'redirect', 'to', ':9'),
  ]))
  // Delete even when create failed: a partial table is impossible (one batch), but be tidy.
  await exec.run(['nft', 'delete', 'table', 'inet', t])
  if (create.code !== 0) {
    return {
      ok: false,
      why: `nft cannot create a nat chain: ${firstLine(create.stderr) || `exit ${create.code}`}`,
      hint: 'the kernel may lack nft nat support (nft_chain_nat, nft_redir, nft_fib); try --method nat',
    }
  }
  return { ok: true }
}

/** Our tables in `nft list tables` output ("table inet subnet-tunnel-<id>"). */
export function parseNftTables(text: string): KernelObject[] {
  const out: KernelObject[] = []
  for (const line of text.split('\n')) {
    const m = /^table inet (\S+)$/.exec(line.trim())
    const id = m && OBJECT_NAME_RE.exec(m[1])?.[1]
    if (!m || !id) continue
    out.push({ id, label: `nft inet ${m[1]}`, revert: [['nft', 'delete', 'table', 'inet', m[1]]] })
  }
  return out
}

/** The nftables backend. */
export const nftFirewall: Firewall = {
  name: 'nft',
  capture: 'listener',
  originalDst: 'socket',
  guardsDns: true,
  probe: nftProbe,
  plan: nftPlan,
  revert: (r) => nftRevert(r.id),
  async leftovers(exec) {
    const r = await exec.run(['nft', 'list', 'tables'])
    return r.code === 0 ? parseNftTables(r.stdout) : []
  },
  flushAfter: (spec) => conntrackFlushArgv(spec.dns),
  flushBefore: (spec) => staleFlowsBeforeApply(spec),
  flushAfterRevert: (spec) => redirectedFlowsFlushArgv(spec.include, spec.listenPort),
  objectName,
  learn: nftLearn,
}
