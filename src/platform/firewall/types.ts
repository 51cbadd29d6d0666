import type { Cidr } from '../../config/cidr'

/** Names of the kernel redirection backends. */
export type MethodName = 'nat' | 'nft' | 'pf' | 'tun'

/** exec --only on tun: the firewall that marks the cgroup's packets (tun-only.ts). */
export type CgroupMatch = 'nft' | 'iptables'

/** Every backend name (the helper protocol and the journal accept only these). */
export const METHOD_NAMES: readonly MethodName[] = ['nat', 'nft', 'pf', 'tun']

export function isMethodName(v: unknown): v is MethodName {
  return typeof v === 'string' && (METHOD_NAMES as readonly string[]).includes(v)
}

/** What to capture: everything the kernel rules need, and nothing about SSH. */
export interface CaptureSpec {
  /** Instance id: [a-z0-9]{1,16}. Every kernel object is named `subnet-tunnel-<id>`. */
  readonly instanceId: string
  /** TCP port of the transparent listener on 127.0.0.1 and ::1. The tun backend has no
   * listener (the engine reads the device): 0 there, and only there. */
  readonly listenPort: number
  /** Networks to redirect. */
  readonly include: readonly Cidr[]
  /** Networks never to redirect (wins over a shorter include: longest prefix decides). */
  readonly exclude: readonly Cidr[]
  /** DNS capture (--dns): absent when DNS is not captured. */
  readonly dns?: DnsCapture
  /**
   * Gateway mode (--gateway): also capture traffic that arrives from other interfaces
   * (containers on a bridge, VMs, a LAN) for the same networks and DNS servers, not only
   * traffic this machine sends. The kernel redirects such traffic to the primary address of
   * the interface it arrived on, NOT to loopback: the listener (and the DNS interceptor, on
   * dns.gatewayPort) must then be bound to 0.0.0.0 / :: to receive it. Traffic to this machine's own addresses is
   * never captured. Absent or false: local traffic only.
   */
  readonly gateway?: boolean
  /**
   * gateway only: serve only traffic arriving on these interfaces (the kernel's -i / iifname).
   * Absent: every interface. See capture-scope.ts.
   */
  readonly gatewayInterfaces?: readonly string[]
  /** gateway only: serve only these source networks (-s / saddr). Absent: every source. */
  readonly gatewaySources?: readonly Cidr[]
  /**
   * --owner-only: capture only the local connections of this uid (nat: -m owner on the OUTPUT
   * jump; nft: meta skuid; tun: ip rule uidrange). Absent: every local user's connections to
   * the captured networks are captured. Under sudo the helper accepts only the sudo caller's
   * uid (or root's).
   */
  readonly ownerUid?: number
  /**
   * exec --only (nat, nft, tun): capture only the local sockets of this cgroup v2,
   * `subnet-tunnel-<id>` one level below the root (nat: `-m cgroup --path` on the OUTPUT jump;
   * nft: `socket cgroupv2 level 1`; tun: either of them marks the packets, see cgroupMatch). The helper creates it before the rules (both resolve the path when a rule is
   * added) and removes it after them.
   */
  readonly cgroup?: string
  /**
   * exec --only on tun (required there with cgroup, refused otherwise): which firewall marks the
   * cgroup's packets for the instance's `fwmark` rule (tun-only.ts). nft only where cgroup v2 is
   * at /sys/fs/cgroup (nft resolves the path there); else iptables' mangle table.
   */
  readonly cgroupMatch?: CgroupMatch
  /**
   * tun only (required there, refused otherwise): the uid that owns the TUN device, i.e. the
   * main process's own uid, so it can open the device without root. Naming another uid only
   * hands the device, and so the traffic routed into it, to that user; under sudo the helper
   * accepts only the sudo caller's uid (or root's).
   */
  readonly tunOwner?: number
  /**
   * --route-by-name: single addresses are added to the capture later, one by one, through the
   * helper's `learn` request, each for a limited time (learn-steps.ts). The plan prepares for
   * them in these families (nft: a set with timeouts and one rule per family); include may
   * then be empty.
   */
  readonly learn?: { readonly families: ReadonlyArray<4 | 6> }
}

/**
 * Redirect DNS (UDP and TCP port 53) sent to some nameservers into our DNS interceptor.
 * Our own forwarder, which passes non-tunnelled names on to the original resolvers, sends
 * from exemptSourcePorts; those packets are never captured, so there is no loop.
 */
export interface DnsCapture {
  /** Nameserver IP literals (v4 and/or v6), e.g. from /etc/resolv.conf, 127.0.0.53 included. */
  readonly servers: readonly string[]
  /** Port of the DNS interceptor (UDP and TCP) on 127.0.0.1 and ::1: where this machine's own
   * queries are redirected (the OUTPUT hook). */
  readonly port: number
  /**
   * gateway only (required there, refused otherwise): the interceptor's port on every address
   * (0.0.0.0, ::), where forwarded clients' queries are redirected (the PREROUTING hook sends
   * them to the incoming interface's address). A port of its own: a UDP socket bound to a
   * wildcard address answers from the address the route to the client picks, which for this
   * machine's own queries (sent from its outgoing address, redirected to 127.0.0.1) is not
   * 127.0.0.1 — conntrack then cannot match the answer and give it the nameserver's address back.
   */
  readonly gatewayPort?: number
  /** Local source ports (UDP and TCP) of our own upstream forwarder: never captured. */
  readonly exemptSourcePorts: readonly number[]
}

/** A plan is data: argv lists to run in order, and the argv lists that undo them. */
export interface Plan {
  readonly apply: string[][]
  readonly revert: string[][]
  /**
   * stdin of apply[i] (pf: the anchor's ruleset for `pfctl -f -`). Absent for nat/nft. The
   * generic runSteps does not pass it: a plan with input is run by its backend (applyPfPlan).
   */
  readonly input?: ReadonlyArray<string | undefined>
}

export type ProbeResult = { ok: true } | { ok: false; why: string; hint?: string }

/** What a probe must check beyond the basics (IPv6 needs ip6tables for `nat`). */
export interface ProbeOptions {
  readonly ipv6?: boolean
}

/** The scope fields of a spec, as the journal records them (nat's revert depends on them). */
export interface ScopeRecord {
  readonly gateway?: boolean
  readonly gatewayInterfaces?: string[]
  readonly gatewaySources?: string[]
  readonly ownerUid?: number
  /** nat: the filter-table chain of the DNS guard exists too. */
  readonly dnsGuard?: boolean
  /** exec --only: the cgroup (nat's OUTPUT jump matches it; the helper removes it). */
  readonly cgroup?: string
  /** exec --only on tun: which firewall holds the mark part (its revert differs). */
  readonly cgroupMatch?: CgroupMatch
  /** tun with split DNS: the forwarder's source ports its exempting rules name (tun-exempt.ts). */
  readonly dnsExemptPorts?: number[]
}

/** What a revert must know besides id and families. */
export interface RevertScope {
  readonly gateway?: boolean
  readonly gatewayInterfaces?: readonly string[]
  readonly gatewaySources?: readonly Cidr[]
  readonly ownerUid?: number
  readonly dnsGuard?: boolean
  readonly cgroup?: string
  readonly dnsExemptPorts?: readonly number[]
}

/**
 * What the journal keeps of an applied instance: everything its revert depends on, never the
 * argv themselves (a forged file must not choose what root runs). Fields are added, never
 * renamed: entries written by earlier releases must still revert.
 */
export interface InstanceRecord extends ScopeRecord {
  readonly id: string
  readonly families: ReadonlyArray<4 | 6>
  /** pf only: the enable-reference token of `pfctl -E` (decimal u64), recorded once applied. */
  readonly pfToken?: string
}

/** One of our kernel objects found by a leftover scan, with the argv that remove it. */
export interface KernelObject {
  /** The instance id; empty when the object does not name it (tun: a routing table alone). */
  readonly id: string
  readonly label: string
  readonly revert: string[][]
  /** For an object a live instance may own without naming it (tun: its hashed routing table). */
  readonly ownedBy?: (instanceId: string) => boolean
}

/** What the helper lets a backend check before it applies (see Firewall.preflight). */
export interface PreflightContext {
  readonly exec: Executor
  readonly warn: (msg: string) => void
}

/**
 * A kernel redirection backend, and everything about it the rest of the program needs: it owns
 * its whole lifecycle (probe, plan, apply, revert from a journal record, leftover scan), so no
 * other module branches on a method's name (sshuttle's BaseMethod keeps firewall.py free of
 * such branches the same way). plan() is pure; an Executor runs the argv lists.
 */
export interface Firewall {
  readonly name: MethodName
  /**
   * How captured connections reach us: redirected to a listener (which asks the socket for the
   * original destination, or the helper's lookup), or routed into a device an engine reads.
   */
  readonly capture: 'listener' | 'device'
  /** listener: where the original destination comes from (SO_ORIGINAL_DST, or pf's DIOCNATLOOK through the helper). */
  readonly originalDst?: 'socket' | 'lookup'
  /**
   * The kernel can drop packets that reach the DNS interceptor without being redirected (the
   * DNS guard, with gateway or owner scope), and SO_ORIGINAL_DST tells a redirected DNS-over-TCP
   * connection from a direct one.
   */
  readonly guardsDns: boolean
  /** Longest instance id the backend's object names allow (tun: an interface name). */
  readonly maxIdLength?: number
  probe(exec: Executor, opts?: ProbeOptions): Promise<ProbeResult>
  plan(spec: CaptureSpec): Plan
  /**
   * Read-only checks of the kernel before apply (tun: its routing table must be unused); run
   * after the journal entry exists, so the id is reserved. Throws to refuse.
   */
  preflight?(spec: CaptureSpec, ctx: PreflightContext): Promise<void>
  /**
   * Runs the plan (default: applyPlan). Returns what the journal must record besides the spec
   * (pf: the enable token, known only once applied), and leaves nothing behind when it throws.
   */
  apply?(exec: Executor, plan: Plan): Promise<Pick<InstanceRecord, 'pfToken'>>
  /** The revert of an applied instance, rebuilt from its journal record alone. */
  revert(record: InstanceRecord): string[][]
  /** A revert step whose failure means it is already done (pf: releasing a gone token). */
  isSpentStep?(argv: readonly string[]): boolean
  /** Our objects of this backend that exist in the kernel (read-only listings). */
  leftovers(exec: Executor): Promise<KernelObject[]>
  /** conntrack deletions to run after apply and after revert (DNS flows redirected before). */
  flushAfter?(spec: CaptureSpec): string[][]
  /** conntrack deletions before apply: redirected TCP flows a dead proxy left (stale-flows.ts). */
  flushBefore?(spec: CaptureSpec): string[][]
  /** conntrack deletions after revert only: our own redirected TCP flows (stale-flows.ts). */
  flushAfterRevert?(spec: CaptureSpec): string[][]
  /** Ports whose connections' original destination the helper may look up for the caller (pf). */
  lookupPorts?(spec: CaptureSpec): number[]
  /** The name of the instance's main object, for messages (`subnet-tunnel-<id>`; tun: the device). */
  objectName(instanceId: string): string
  /** --route-by-name: how one learnt address enters and leaves the capture (absent: unsupported). */
  readonly learn?: LearnSteps
}

/**
 * One learnt address (a host CIDR, already validated by the helper) in and out of an applied
 * instance's capture. Pure, like plan(): argv lists only.
 */
export interface LearnSteps {
  /** The kernel removes an entry itself once its time is up (nft set timeouts); else the helper does. */
  readonly kernelTimeout: boolean
  add(spec: CaptureSpec, address: Cidr, ttlS: number): string[][]
  /**
   * Extends an entry's time (kernelTimeout only): alternatives tried in order until one succeeds
   * (nft: delete and re-add in one transaction; if it expired meanwhile, a plain add).
   */
  refresh?(spec: CaptureSpec, address: Cidr, ttlS: number): string[][][]
  /** Removes it (helper-timed backends, and a refused refresh). */
  remove(spec: CaptureSpec, address: Cidr): string[][]
}

/** Result of running one argv. */
export interface ExecResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs argv lists (never through a shell). The real one uses child_process.execFile. */
export interface Executor {
  run(argv: readonly string[], opts?: { input?: string }): Promise<ExecResult>
}
