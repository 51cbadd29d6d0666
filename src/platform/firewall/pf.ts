/**
 * The `pf` backend (macOS). NOT YET RUN ON A REAL MAC: the ruleset text, the argv and the
 * token handling are unit-tested against what xnu's sources say, nothing more.
 *
 * Where our rules live: the child anchor `com.apple/subnet-tunnel-<id>`. macOS's stock
 * /etc/pf.conf ends with `rdr-anchor "com.apple/*"` and `anchor "com.apple/*"`, which evaluate
 * every child anchor; replacing the main ruleset would drop what the system put there, so it is
 * never touched. Load: `pfctl -a ANCHOR -f -`; remove: `pfctl -a ANCHOR -F all` (with -a it
 * flushes only that anchor). The probe checks both wildcard anchors exist and lo0 is not skipped.
 *
 * Enabling: `pfctl -E` takes a reference ("Token : <u64>") and enables pf if needed; `pfctl -X
 * <token>` releases exactly it. The token exists only after apply, so the helper records it in
 * the journal at once (InstanceRecord.pfToken) for cleanup; releasing a token that is already
 * gone fails, and revert and cleanup count that step as done (isPfReleaseStep).
 *
 * Rules per family, translation before filtering: rdr (first match wins) for exempt DNS
 * sources, the interceptor, DNS servers, loopback and our own addresses, then excludes (`no
 * rdr`) and includes (`rdr pass … -> 127.0.0.1 port P`) longest prefix first; filter rules in
 * the same order, all `quick` (longest prefix wins). rdr only applies to packets arriving on an
 * interface, so includes are `route-to lo0`: the packets loop through lo0, where `rdr on lo0`
 * catches them, and DIOCNATLOOK (pf-natlook.ts) recovers the original destination. How this
 * differs from sshuttle's pf method: docs/design-notes.md.
 */
import { formatCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { DNS_PORT, dnsServersOf, exemptPorts } from './dns-capture'
import { firstLine } from './executor'
import { assertSpec, includedFamilies, INSTANCE_ID_RE, objectName, OBJECT_PREFIX, orderedRules } from './naming'
import type { CaptureSpec, ExecResult, Executor, Firewall, KernelObject, Plan, ProbeResult } from './types'

/** The wildcard anchor point of macOS's stock /etc/pf.conf that our anchor hangs under. */
export const PF_PARENT_ANCHOR = 'com.apple'

const AF: Record<4 | 6, string> = { 4: 'inet', 6: 'inet6' }
/** Where rdr on lo0 sends captured connections: our listeners' addresses. */
const LOOPBACK: Record<4 | 6, string> = { 4: '127.0.0.1', 6: '::1' }
const LOOPNET: Record<4 | 6, string> = { 4: '127.0.0.0/8', 6: '::1' }
/** pfctl prints `Token : %llu` (u64: kept as a decimal string, never a JS number). */
const TOKEN_RE = /^\s*Token\s*:\s*(\d{1,20})\s*$/m
export const PF_TOKEN_RE = /^\d{1,20}$/

/** `com.apple/subnet-tunnel-<id>` (the id is checked first). */
export function pfAnchor(instanceId: string): string {
  return `${PF_PARENT_ANCHOR}/${objectName(instanceId)}`
}

/** The anchor's ruleset, one rule per line, for `pfctl -a <anchor> -f -`. */
export function pfRules(spec: CaptureSpec): string {
  assertSpec(spec)
  if (spec.gateway) {
    throw new TunnelError('FW_UNSUPPORTED', 'pf: --gateway is not implemented for the pf backend', {
      hint: 'run without --gateway on macOS',
    })
  }
  if (spec.ownerUid !== undefined) {
    // pf's `user` matches filter rules only, never rdr; not written without a Mac to test it on.
    throw new TunnelError('FW_UNSUPPORTED', 'pf: --owner-only is not implemented for the pf backend', {
      hint: 'run without --owner-only on macOS',
    })
  }
  const families = includedFamilies(spec)
  const rdr: string[] = []
  const filter: string[] = []
  for (const f of families) {
    const af = AF[f]
    const dns = spec.dns
    if (dns) {
      const exempt = exemptPorts(dns)
      const servers = dnsServersOf(dns, f)
      // Our own forwarder's queries to the original resolvers: never captured (no loop).
      if (exempt.length > 0) {
        const from = `from any port { ${exempt.join(' ')} } to any port ${DNS_PORT}`
        rdr.push(`no rdr on lo0 ${af} proto { udp tcp } ${from}`)
        filter.push(`pass out quick ${af} proto { udp tcp } ${from}`)
      }
      // A packet already going to the interceptor is left alone (it may listen on port 53).
      rdr.push(`no rdr on lo0 ${af} proto { udp tcp } to ${LOOPBACK[f]} port ${dns.port}`)
      if (servers.length > 0) {
        const to = `to { ${servers.join(' ')} } port ${DNS_PORT}`
        rdr.push(`rdr pass on lo0 ${af} proto { udp tcp } ${to} -> ${LOOPBACK[f]} port ${dns.port}`)
        filter.push(`pass out quick route-to lo0 ${af} proto { udp tcp } ${to} keep state`)
      }
    }
    const rules = orderedRules(spec, f)
    if (!rules.some((r) => r.action === 'redirect')) continue
    // Past DNS: never capture loopback or this host's own addresses (`self` is expanded by
    // pfctl at load time), as the Linux backends' "local destination" return does.
    rdr.push(`no rdr on lo0 ${af} proto tcp to ${LOOPNET[f]}`)
    rdr.push(`no rdr on lo0 ${af} proto tcp to self`)
    for (const r of rules) {
      const to = `to ${formatCidr(r.cidr)}`
      if (r.action === 'return') {
        rdr.push(`no rdr on lo0 ${af} proto tcp ${to}`)
        filter.push(`pass out quick ${af} proto tcp ${to}`)
      } else {
        rdr.push(`rdr pass on lo0 ${af} proto tcp ${to} -> ${LOOPBACK[f]} port ${spec.listenPort}`)
        filter.push(`pass out quick route-to lo0 ${af} proto tcp ${to} keep state`)
      }
    }
  }
  return [`# ${objectName(spec.instanceId)}: generated by subnet-tunnel, removed on exit`, ...rdr, ...filter, ''].join('\n')
}

/** argv that load the anchor (stdin: the ruleset). */
export function pfLoadArgv(instanceId: string): string[] {
  return ['pfctl', '-a', pfAnchor(instanceId), '-f', '-']
}

/** argv that take a pf enable reference. Never add -q: it also silences the token line. */
export const PF_ENABLE_ARGV: readonly string[] = ['pfctl', '-E']

/**
 * The argv that undo an instance: flush its anchor, then release its enable reference when the
 * token is known. From (id, token) alone, as cleanup needs it.
 */
export function pfRevert(instanceId: string, token?: string): string[][] {
  const out = [['pfctl', '-a', pfAnchor(instanceId), '-F', 'all']]
  if (token !== undefined) {
    if (!PF_TOKEN_RE.test(token)) throw new TunnelError('INTERNAL', `invalid pf token "${token}"`)
    out.push(['pfctl', '-X', token])
  }
  return out
}

/** Whether argv releases a pf reference: its failure means "already released" (see top). */
export function isPfReleaseStep(argv: readonly string[]): boolean {
  return argv[0] === 'pfctl' && argv[1] === '-X' && argv.length === 3
}

/**
 * Pure plan. apply[0] loads the anchor from stdin (`input[0]`), apply[1] takes the enable
 * reference; the revert has no token yet — applyPfPlan returns it and pfRevert(id, token)
 * is the full revert. Run it with applyPfPlan, not the generic applyPlan (which neither
 * passes stdin nor reads the token).
 */
export function pfPlan(spec: CaptureSpec): Plan {
  const rules = pfRules(spec)
  if (includedFamilies(spec).length === 0) return { apply: [], revert: [] }
  return {
    apply: [pfLoadArgv(spec.instanceId), [...PF_ENABLE_ARGV]],
    input: [rules, undefined],
    revert: pfRevert(spec.instanceId),
  }
}

/** The token in `pfctl -E` output (stderr; stdout searched too), or undefined. */
export function parsePfToken(output: string): string | undefined {
  return TOKEN_RE.exec(output)?.[1]
}

function stepError(what: string, r: ExecResult, argv: readonly string[]): TunnelError {
  return new TunnelError('FW_APPLY', `pfctl: ${what}: ${firstLine(r.stderr) || `exit ${r.code}`}`, {
    hint: r.code === 127 ? 'pfctl not found: the pf backend needs macOS' : 'run with -v for details; check /etc/pf.conf',
    cause: { argv, ...r },
  })
}

/**
 * Runs a pfPlan: load the anchor, then `pfctl -E`; returns the token (undefined for an empty
 * plan). On any failure it flushes the anchor (and releases a token it got) before throwing,
 * so a failed apply leaves nothing behind.
 */
export async function applyPfPlan(exec: Executor, plan: Plan): Promise<string | undefined> {
  if (plan.apply.length === 0) return undefined
  const [load, enable] = plan.apply
  const undo = async (token?: string): Promise<void> => {
    for (const argv of [...plan.revert, ...(token ? [['pfctl', '-X', token]] : [])]) await exec.run(argv)
  }
  const loaded = await exec.run(load, { input: plan.input?.[0] ?? '' })
  if (loaded.code !== 0) {
    await undo()
    throw stepError('load anchor', loaded, load)
  }
  const en = await exec.run(enable)
  const token = parsePfToken(`${en.stderr}\n${en.stdout}`)
  if (en.code !== 0 || !token) {
    await undo(token)
    throw en.code !== 0
      ? stepError('enable (-E)', en, enable)
      : new TunnelError('FW_APPLY', 'pfctl -E printed no reference token', { hint: 'is this macOS? run with -v for details' })
  }
  return token
}

/** `rdr-anchor "com.apple/*"` in `pfctl -s nat`, `anchor "com.apple/*"` in `pfctl -s rules`. */
function hasAnchorPoint(text: string, kind: 'rdr-anchor' | 'anchor'): boolean {
  return new RegExp(`^${kind} "${PF_PARENT_ANCHOR.replace('.', '\\.')}/\\*"`, 'm').test(text)
}

/**
 * Usable = pfctl runs, the main ruleset has the com.apple wildcard anchor points (nat and
 * filter) our anchor hangs under, and lo0 is not skipped (rdr on lo0 would never match).
 * Read-only: changes nothing.
 */
async function pfProbe(exec: Executor): Promise<ProbeResult> {
  const nat = await exec.run(['pfctl', '-s', 'nat'])
  if (nat.code === 127) {
    return { ok: false, why: 'pfctl not found', hint: 'pf is the macOS backend; on Linux use --method nft or nat' }
  }
  if (nat.code !== 0) {
    return { ok: false, why: `pfctl unusable: ${firstLine(nat.stderr) || `exit ${nat.code}`}`, hint: 'pf needs root (the helper runs as root)' }
  }
  const rules = await exec.run(['pfctl', '-s', 'rules'])
  if (rules.code !== 0 || !hasAnchorPoint(nat.stdout, 'rdr-anchor') || !hasAnchorPoint(rules.stdout, 'anchor')) {
    return {
      ok: false,
      why: `the main pf ruleset lacks rdr-anchor/anchor "${PF_PARENT_ANCHOR}/*" (a customised /etc/pf.conf?)`,
      hint: `add rdr-anchor "${PF_PARENT_ANCHOR}/*" and anchor "${PF_PARENT_ANCHOR}/*" to /etc/pf.conf, then sudo pfctl -f /etc/pf.conf`,
    }
  }
  const lo = await exec.run(['pfctl', '-s', 'Interfaces', '-i', 'lo0', '-v'])
  if (lo.code === 0 && /\bskip\b/.test(lo.stdout)) {
    return { ok: false, why: 'pf skips lo0 (set skip on lo0)', hint: 'remove "set skip on lo0" from /etc/pf.conf, then sudo pfctl -f /etc/pf.conf' }
  }
  return { ok: true }
}

/** Our anchors in `pfctl -a com.apple -s Anchors` output ("  com.apple/subnet-tunnel-<id>"). */
export function parsePfAnchors(text: string): KernelObject[] {
  const out: KernelObject[] = []
  const prefix = `${PF_PARENT_ANCHOR}/${OBJECT_PREFIX}`
  for (const line of text.split('\n')) {
    const name = line.trim()
    if (!name.startsWith(prefix)) continue
    const id = name.slice(prefix.length)
    if (!INSTANCE_ID_RE.test(id)) continue
    // The token of a dead instance is unknown here: its reference stays (pf stays enabled)
    // until reboot or `pfctl -d`; only the journal can release it.
    out.push({ id, label: `pf anchor ${name}`, revert: pfRevert(id) })
  }
  return out
}

/** argv that list the anchors under ours (read-only). */
export const PF_LIST_ANCHORS_ARGV: readonly string[] = ['pfctl', '-a', PF_PARENT_ANCHOR, '-s', 'Anchors']

/** The pf backend. */
export const pfFirewall: Firewall = {
  name: 'pf',
  capture: 'listener',
  originalDst: 'lookup',
  guardsDns: false,
  probe: pfProbe,
  plan: pfPlan,
  async apply(exec, plan) {
    const token = await applyPfPlan(exec, plan)
    return token === undefined ? {} : { pfToken: token }
  },
  revert: (r) => pfRevert(r.id, r.pfToken),
  isSpentStep: isPfReleaseStep,
  async leftovers(exec) {
    const r = await exec.run(PF_LIST_ANCHORS_ARGV)
    return r.code === 0 ? parsePfAnchors(r.stdout) : []
  },
  // DIOCNATLOOK answers only for connections our rdr rules sent to these ports.
  lookupPorts: (spec) => [spec.listenPort, ...(spec.dns ? [spec.dns.port] : [])],
  objectName,
}
