import * as fs from 'node:fs'
import * as path from 'node:path'
import { type BindAddress, parseBindAddress, parseProxyAuth } from '../config/bind-address'
import type { Cidr } from '../config/cidr'
import { type ForwardSpec, parseForward } from '../config/forward-spec'
import { type ListenAddress, parseListen } from '../config/listen'
import { checkSshRequest, resolveSshConfig } from '../config/ssh-config'
import type { RemotePlan } from '../config/ssh-config-types'
import { resolveJumpChain } from '../config/ssh-jump-chain'
import { resolveNetworks } from '../config/subnets'
import { cgroup2Root } from '../platform/os/cgroup'
import { TunnelError } from '../errors'
import { firewallFor } from '../platform/firewall/choose-method'
import { SAFE_PATH } from '../platform/firewall/executor'
import type { CgroupMatch } from '../platform/firewall/types'
import { AccessPolicy } from '../router/access'
import { type OpensshDetection, detectOpenssh } from '../ssh/openssh/detect'
import { type EngineProgram, findEngine } from '../tun/external-engine'
import { type GatewayScope, invokingUid, planGatewayScope } from './capture-scope'
import type { TunnelConfig } from './config'
import { type DnsPlan, planDns } from './dns-setup'

export interface IncludePlan {
  readonly cidr: Cidr
  /** Remote name; undefined = the default remote. */
  readonly via?: string
  /** Where it came from (absent: given on the command line) and, for auto-nets, the bastion's route. */
  readonly origin?: 'auto-net'
  readonly why?: string
}

/** A network kept out of the tunnel that the user did not name (auto-nets' protected parts). */
export interface ExcludePlan {
  readonly cidr: Cidr
  readonly why: string
}

/** A -L or -R as given, and parsed. */
export interface ForwardPlan {
  readonly text: string
  readonly spec: ForwardSpec
}

/** Everything decided before touching the network or the kernel. */
export interface TunnelPlan {
  readonly remotes: RemotePlan[]
  readonly defaultRemote: string
  readonly includes: IncludePlan[]
  readonly userExcludes: Cidr[]
  /** Found at run time (auto-nets): parts of chosen networks that must stay direct. */
  readonly autoExcludes?: readonly ExcludePlan[]
  /** --auto-nets: the bastion's networks are added to includes once SSH is up. */
  readonly autoNets?: boolean
  /** --route-by-name: addresses of names under the DNS domains are learnt from the answers. */
  readonly routeByName?: boolean
  /** --route-grace: seconds a learnt address outlives its TTL (default DEFAULT_LEARN_GRACE_S). */
  readonly learnGraceS?: number
  readonly dns?: DnsPlan
  /** Kernel capture (and so the privileged helper) is needed. */
  readonly capture: boolean
  readonly listen: ListenAddress
  readonly socks: BindAddress[]
  readonly http: BindAddress[]
  readonly proxyAuth?: { username: string; password: string }
  readonly access: AccessPolicy
  readonly method: 'auto' | 'nat' | 'nft' | 'pf' | 'tun'
  /** Who speaks SSH, and why that one (for -v). */
  readonly sshEngine: SshEnginePlan
  /** The packet engine of --method tun: the built-in stack, or an external program found now. */
  readonly tunEngine?: 'builtin' | EngineProgram
  readonly connections: number
  readonly connectionsMax: number
  /** Also capture traffic routed through this host (containers, VMs). */
  readonly gateway: boolean
  /** gateway: the interfaces and source networks served (absent lists: every). */
  readonly gatewayScope?: GatewayScope
  /** --owner-only: the uid whose local connections alone are captured. */
  readonly ownerUid?: number
  readonly localForwards: ForwardPlan[]
  readonly remoteForwards: ForwardPlan[]
  /** --no-net-watch: no redial on network change (keepalive alone notices a dead path). */
  readonly netWatch?: false
  /** --fail-closed (fail-closed.ts): the kernel refuses the captured networks while SSH is down and after exit. */
  readonly failClosed?: true
  /** exec --only: capture only the command's cgroup (src/platform/os/cgroup.ts); nat, nft or tun. */
  readonly execOnly?: true
  /** exec --only on tun: the firewall that marks the command's packets (planExecOnlyMatch). */
  readonly execOnlyMatch?: CgroupMatch
  /** Open one probe channel per bastion at start (forward-probe.ts); --no-forward-check: not. */
  readonly forwardCheck?: boolean
}

/** The SSH engine chosen at plan time: the OpenSSH client found (and its version), or ssh2. */
export type SshEnginePlan =
  | { readonly name: 'builtin'; readonly why: string }
  | ({ readonly name: 'openssh'; readonly why: string } & Extract<OpensshDetection, { ok: true }>)

/** What planning may ask the system, in the order it does (tests inject fakes). */
export interface PlanSystem {
  /** DNS options → capture plan; reads this machine's resolver configuration. */
  readonly planDns: typeof planDns
  /** Subnet arguments → CIDRs; host names are looked up (DNS). */
  readonly resolveNetworks: typeof resolveNetworks
  /** `ssh -G` (or the config parser) for one destination. */
  readonly resolveSshConfig: typeof resolveSshConfig
  /** `ssh -V`: is there an OpenSSH client the openssh engine can use? */
  readonly detectOpenssh: () => Promise<OpensshDetection>
  /** Where cgroup v2 is mounted (exec --only); default: /proc/self/mountinfo. */
  readonly cgroup2Root?: () => string | undefined
  /** exec --only on tun: whether nft is installed; default: a look at the helper's PATH. */
  readonly nftInstalled?: () => boolean
}

const REAL: PlanSystem = { planDns, resolveNetworks, resolveSshConfig, detectOpenssh: () => detectOpenssh() }

/**
 * Validates the whole command line offline, then resolves what needs the system: every
 * argument that can be wrong by itself (-L, -R, listen and proxy addresses, --allow, the
 * method and engine, SUBNET=REMOTE syntax, ssh destinations) is checked before any process
 * starts (`ssh -G`, resolvectl) or any packet is sent (host names of subnets): a usage error
 * exits 2 and leaves nothing behind, because nothing has started.
 */
export async function planTunnel(c: TunnelConfig, sys: PlanSystem = REAL): Promise<TunnelPlan> {
  // 1. Offline: the arguments alone.
  const split = c.subnets.map(splitRemote)
  const defaultRemote = c.remote || split.find((s) => s.via)?.via || ''
  if (!defaultRemote) {
    throw new TunnelError('NO_REMOTE', 'no SSH destination given', {
      hint: 'use -r [user@]host[:port] or set SUBNET_TUNNEL_REMOTE',
    })
  }
  const hasFrontEnd = c.socks.length + c.httpProxy.length + c.localForwards.length + c.remoteForwards.length > 0
  const autoNets = c.autoNets === true
  const routeByName = c.dns.routeByName === true
  if (routeByName && c.dns.domains.length === 0) {
    throw new TunnelError('USAGE', '--route-by-name needs --dns-domain', {
      hint: 'say which names to route: subnet-tunnel -r bastion --dns-domain corp.internal --route-by-name',
    })
  }
  // macOS: pf has no learnt addresses, and its utun routes are not the helper's to add.
  if (routeByName && process.platform === 'darwin') {
    throw new TunnelError('USAGE', '--route-by-name is available on Linux only (--method nft, nat or tun)', {
      hint: 'name the subnets the names resolve to: subnet-tunnel -r bastion --dns-domain corp.internal 10.0.0.0/16',
    })
  }
  if (c.dns.routeGraceS !== undefined && !routeByName) {
    throw new TunnelError('USAGE', '--route-grace needs --route-by-name', { hint: 'e.g. --dns-domain corp.internal --route-by-name --route-grace 120' })
  }
  if (split.length === 0 && !hasFrontEnd && !c.dns.enabled && !autoNets) {
    throw new TunnelError('NO_SUBNETS', 'nothing to do: no subnets, proxies or forwards', {
      hint: 'name subnets (subnet-tunnel -r bastion 10.0.0.0/16), or use -D PORT, --http-proxy PORT, -L or -R',
    })
  }
  const localForwards = c.localForwards.map((text) => ({ text, spec: parseForward('local', text) }))
  const remoteForwards = c.remoteForwards.map((text) => ({ text, spec: parseForward('remote', text) }))
  const listen = parseListen(c.listen)
  const socks = c.socks.map((s) => parseBindAddress(s, '-D'))
  const http = c.httpProxy.map((s) => parseBindAddress(s, '--http-proxy'))
  const proxyAuth = c.proxyAuth !== undefined ? parseProxyAuth(c.proxyAuth) : undefined
  const access = new AccessPolicy(c.allow)
  // Networks come from the arguments, from the bastion (auto-nets) or from DNS answers.
  const subnets = split.length > 0 || autoNets || routeByName
  if (c.dns.enabled && !subnets) {
    throw new TunnelError('NO_SUBNETS', '--dns needs at least one subnet to tunnel', {
      hint: 'the names resolve to private addresses that must be tunnelled too: name the subnets (10.0.0.0/16), or use --dns-domain DOMAIN --route-by-name, or --auto-nets',
    })
  }
  if (c.gateway && !subnets) {
    throw new TunnelError('USAGE', '--gateway needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion --gateway-if br0 10.0.0.0/16' })
  }
  if (c.ownerOnly && !subnets) {
    throw new TunnelError('USAGE', '--owner-only needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion --owner-only 10.0.0.0/16' })
  }
  if (c.ownerOnly && process.platform === 'darwin') {
    throw new TunnelError('USAGE', '--owner-only is not available on macOS', { hint: 'leave out --owner-only' })
  }
  if (c.failClosed && !subnets) {
    throw new TunnelError('USAGE', '--fail-closed needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion --fail-closed 10.0.0.0/16' })
  }
  if (c.failClosed && (process.platform !== 'linux' || c.method === 'pf')) {
    throw new TunnelError('USAGE', '--fail-closed is available on Linux only (nat, nft and tun)', { hint: 'leave out --fail-closed' })
  }
  if (c.execOnly && c.failClosed) {
    throw new TunnelError('USAGE', '--fail-closed does not go with exec --only: its guard is routing, which cannot tell one program from another, so it would close the subnets for the whole machine', {
      hint: 'leave out --fail-closed (the command alone is captured; when the tunnel ends, so does it)',
    })
  }
  if (c.execOnly && !subnets) {
    throw new TunnelError('USAGE', 'exec --only needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion 10.0.0.0/16 exec --only -- psql -h 10.0.1.20' })
  }
  const tunEngine = planTunEngine(c, c.dns.enabled)
  // After the tun check: --gateway is refused there whatever its scope.
  const gatewayScope = planGatewayScope(c)
  const names = [...new Set([defaultRemote, ...split.map((s) => s.via).filter((v): v is string => v !== undefined)])]
  const request = (name: string) => ({
    destination: name,
    configFile: c.sshConfig,
    port: c.port,
    identities: c.identity,
    jump: c.jump,
    options: c.sshOption,
  })
  // Every name is checked before the first `ssh -G` runs: that one could already run a Match exec.
  for (const name of names) checkSshRequest(request(name))

  // 2. The system: the ssh client, DNS configuration, host names of subnets, ssh configuration.
  //    They do not depend on each other, so they run at once (start-up time, issue 18: `ssh -V`
  //    and `ssh -G` each cost a process start); started in this order, and when several fail the
  //    first of them in this order is the one reported, as when they ran one after another.
  const [sshEngine, dns, includeLists, userExcludes, remotes] = await firstFailureInOrder([
    planSshEngine(c.sshEngine, sys),
    c.dns.enabled ? sys.planDns(c.dns) : Promise.resolve(undefined),
    Promise.all(split.map((s) => sys.resolveNetworks([s.network]))),
    sys.resolveNetworks(c.exclude),
    Promise.all(
      names.map(async (name): Promise<RemotePlan> => {
        const target = await sys.resolveSshConfig(request(name))
        // Each hop's own ProxyJump counts too, as with ssh (config/ssh-jump-chain.ts).
        const hops = await resolveJumpChain(target, (r) => sys.resolveSshConfig(r), c.sshConfig)
        return { name, request: request(name), target, hops }
      }),
    ),
  ] as const)
  const cgroupRoot = c.execOnly ? sys.cgroup2Root?.() ?? cgroup2Root() : undefined
  const includes: IncludePlan[] = split.flatMap((s, i) => includeLists[i]!.map((cidr) => ({ cidr, via: s.via })))
  return {
    remotes,
    defaultRemote,
    includes,
    userExcludes,
    dns,
    ...(autoNets && { autoNets: true }),
    ...(routeByName && { routeByName: true }),
    ...(c.dns.routeGraceS !== undefined && { learnGraceS: c.dns.routeGraceS }),
    capture: includes.length > 0 || autoNets || routeByName,
    method: c.execOnly ? planExecOnlyMethod(c, cgroupRoot) : c.method,
    ...(c.execOnly && c.method === 'tun' && { execOnlyMatch: planExecOnlyMatch(cgroupRoot, sys.nftInstalled ?? nftOnSafePath) }),
    sshEngine,
    ...(tunEngine && { tunEngine }),
    gateway: c.gateway,
    ...(gatewayScope && { gatewayScope }),
    ...(c.ownerOnly && { ownerUid: invokingUid() }),
    connections: c.connections,
    connectionsMax: c.connectionsMax,
    listen,
    socks,
    http,
    proxyAuth,
    access,
    localForwards,
    remoteForwards,
    ...(c.netWatch === false && { netWatch: false as const }),
    ...(c.failClosed === true && { failClosed: true as const }),
    ...(c.execOnly === true && { execOnly: true as const }),
    forwardCheck: c.noForwardCheck !== true,
  }
}

/**
 * Like Promise.all, but waits for every promise and, when some failed, throws the failure of
 * the first one in list order rather than the earliest in time: the error a user sees does not
 * depend on which process happened to finish first.
 */
async function firstFailureInOrder<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(ps as readonly Promise<unknown>[])
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T
}

/**
 * exec --only: which kernel match can see the command's cgroup. nft's `socket cgroupv2` takes a
 * path that nft itself resolves under /sys/fs/cgroup; iptables' `-m cgroup --path` is resolved by
 * the kernel wherever cgroup v2 is mounted (hybrid set-ups mount it at /sys/fs/cgroup/unified).
 * Neither: refused here, before anything starts.
 */
export function planExecOnlyMethod(c: Pick<TunnelConfig, 'method' | 'gateway'>, root: string | undefined): TunnelConfig['method'] {
  if (process.platform !== 'linux' || c.method === 'pf') {
    throw new TunnelError('USAGE', 'exec --only needs Linux and --method nft, nat or tun (a cgroup match in the kernel rules)', {
      hint: 'leave out --only',
    })
  }
  if (c.gateway) throw new TunnelError('USAGE', 'exec --only captures a local command: it does not go with --gateway', { hint: 'leave out --gateway' })
  if (!root) {
    throw new TunnelError('USAGE', 'exec --only needs cgroup v2, and none is mounted here', {
      hint: 'mount the unified hierarchy (mount -t cgroup2 none /sys/fs/cgroup; systemd does it by default), or leave out --only',
    })
  }
  // tun: routes cannot tell one program from another, but a mark can (execOnlyMatch).
  if (root === '/sys/fs/cgroup' || c.method === 'tun') return c.method
  if (c.method === 'nft') {
    throw new TunnelError('USAGE', `exec --only with --method nft: nft finds cgroups under /sys/fs/cgroup only, and cgroup v2 is mounted at ${root} here`, {
      hint: 'use --method nat (iptables -m cgroup, which the kernel resolves itself)',
    })
  }
  return 'nat'
}

/**
 * exec --only on tun: which firewall marks the command's packets (tun-only.ts). nft where it can
 * resolve the cgroup (cgroup v2 at /sys/fs/cgroup) and is installed, as auto prefers nft for
 * the other methods; else iptables, whose `-m cgroup --path` the kernel resolves wherever cgroup
 * v2 is mounted. `root` is known to be set (planExecOnlyMethod refused otherwise).
 */
export function planExecOnlyMatch(root: string | undefined, nftInstalled: () => boolean): CgroupMatch {
  return root === '/sys/fs/cgroup' && nftInstalled() ? 'nft' : 'iptables'
}

/** Whether the helper (which runs with SAFE_PATH) finds nft. */
function nftOnSafePath(): boolean {
  return SAFE_PATH.split(':').some((d) => fs.existsSync(path.join(d, 'nft')))
}

/**
 * --ssh-engine: `openssh` needs an OpenSSH client ≥ 7.4 (mux proxy mode) on PATH and fails here,
 * before anything starts, if there is none; `auto` takes it when there is, else the built-in one.
 */
export async function planSshEngine(asked: TunnelConfig['sshEngine'], sys: Pick<PlanSystem, 'detectOpenssh'>): Promise<SshEnginePlan> {
  if (asked === 'builtin') return { name: 'builtin', why: '--ssh-engine builtin' }
  const d = await sys.detectOpenssh()
  if (d.ok) return { ...d, name: 'openssh', why: `${asked === 'auto' ? 'auto: ' : ''}${d.versionText} at ${d.ssh}` }
  if (asked === 'openssh') {
    throw new TunnelError('USAGE', `--ssh-engine openssh: ${d.why}`, {
      hint: 'install an OpenSSH client 7.4 or newer (apt-get install openssh-client), or use --ssh-engine builtin',
    })
  }
  return { name: 'builtin', why: `auto: ${d.why}, so the built-in engine` }
}

/**
 * --method tun / --tun-engine, checked offline: the engine program must exist now, and the
 * combinations that cannot work are refused here rather than half-way through start-up.
 * `dns`: whether DNS is captured (a DnsPlan or --dns).
 */
export function planTunEngine(c: Pick<TunnelConfig, 'method' | 'tunEngine' | 'gateway'>, dns: DnsPlan | boolean | undefined): TunnelPlan['tunEngine'] {
  if (c.method === 'auto' || firewallFor(c.method).capture !== 'device') {
    if (c.tunEngine !== undefined) throw new TunnelError('USAGE', '--tun-engine needs --method tun', { hint: 'e.g. --method tun --tun-engine tun2socks' })
    return undefined
  }
  if (c.gateway) {
    throw new TunnelError('USAGE', '--gateway is not needed with --method tun', {
      hint: 'traffic routed through this host follows the same routes into the TUN device (with IP forwarding on)',
    })
  }
  const spec = c.tunEngine ?? 'builtin'
  if (spec === 'builtin') return 'builtin'
  const program = findEngine(spec)
  if (dns) {
    // --dns-domain and --route-by-name imply --dns: the same refusal names them.
    throw new TunnelError('USAGE', `--dns (also implied by --ns-hosts, --dns-domain, --route-by-name) with --tun-engine ${spec}: DNS over the TUN device needs the built-in engine`, {
      hint: 'external engines send UDP through SOCKS5 UDP ASSOCIATE, which the tunnel does not carry; use --tun-engine builtin, or another --method',
    })
  }
  return program
}

/** "10.0.0.0/16=bastion-b" → network and remote; '=' never occurs in a CIDR or host name. */
function splitRemote(s: string): { network: string; via?: string } {
  const i = s.indexOf('=')
  if (i < 0) return { network: s }
  const network = s.slice(0, i)
  const via = s.slice(i + 1)
  if (!network || !via) {
    throw new TunnelError('USAGE', `"${s}": expected SUBNET=REMOTE`, { hint: 'e.g. 10.1.0.0/16=bastion-b' })
  }
  return { network, via }
}
