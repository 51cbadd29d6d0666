import net from 'node:net'
import { type Cidr, hostCidr } from '../config/cidr'
import { DnsCache } from '../dns/cache'
import { type AnsweredQuery, DnsService } from '../dns/dns-service'
import { DnsInterceptor } from '../dns/interceptor'
import { SplitDnsPolicy, normalizeDomain, reverseZones } from '../dns/policy'
import { answerAddresses } from '../dns/answer-addresses'
import { type SystemReaders, flushResolvedCache, isResolvedStub, parseResolvConf, parseServerSpec, readLocalDns, remoteResolvers } from '../dns/resolv-conf'
import { TunnelResolver } from '../dns/tunnel-resolver'
import { UpstreamResolver } from '../dns/upstream-resolver'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { DnsCapture } from '../platform/firewall/types'
import type { DescriptorReserve } from '../router/descriptor-reserve'
import type { LearntRoutes } from '../router/learnt-routes'
import type { Destination, Dialer } from '../router/types'
import type { DnsOptions } from './config'

// One or more labels of letters, digits, '-' and '_' (as in _msdcs), each 1..63 long.
const DOMAIN = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$/

/** What can be decided before connecting: which servers to capture, where local names go. */
export interface DnsPlan {
  /** Nameservers whose port-53 traffic is captured. */
  readonly capture: string[]
  /** The machine's original resolvers, for names split DNS keeps local (no stub addresses). */
  readonly localUpstreams: string[]
  /** Resolvers on the remote side given with --to-ns (empty: read the bastion's resolv.conf). */
  readonly toNs: Destination[]
  readonly domains: string[]
  /** `--dns-domain auto`: the bastion's resolv.conf search/domain lines are added at start. */
  readonly autoDomains?: boolean
  readonly usesResolved: boolean
  readonly cache: boolean
  /** --dns-all-families: keep A/AAAA answers of a family no tunnelled subnet belongs to. */
  readonly allFamilies?: boolean
}

/** Validates the DNS options and reads this machine's resolver configuration. */
export async function planDns(a: DnsOptions, resolvConfPath = '/etc/resolv.conf', readers: SystemReaders = {}): Promise<DnsPlan> {
  for (const h of a.nsHosts) {
    if (net.isIP(h) === 0) {
      throw new TunnelError('USAGE', `--ns-hosts: "${h}" is not an IP address`, { hint: 'e.g. --ns-hosts 10.0.0.2,fd00::53' })
    }
  }
  const toNs = a.toNs.map((s) => {
    const d = parseServerSpec(s)
    if (!d) throw new TunnelError('USAGE', `--to-ns: "${s}" is not IP[:PORT]`, { hint: 'e.g. --to-ns 10.0.0.2 or --to-ns [fd00::53]:53' })
    return d
  })
  const autoDomains = a.domains.some((d) => normalizeDomain(d) === 'auto')
  const domains = a.domains.filter((d) => normalizeDomain(d) !== 'auto').map((d) => {
    const n = normalizeDomain(d)
    if (!DOMAIN.test(n)) throw new TunnelError('USAGE', `--dns-domain: "${d}" is not a domain`, { hint: 'e.g. --dns-domain corp.internal' })
    return n
  })
  const local = await readLocalDns(resolvConfPath, readers)
  const resolvConf = local.resolvConf.nameservers
  let capture: string[]
  let localUpstreams: string[]
  if (a.nsHosts.length > 0) {
    capture = [...new Set(a.nsHosts)]
    localUpstreams = capture
  } else {
    // systemd-resolved: capture its stub (what programs ask) and its upstreams (what resolved
    // itself asks). Local names must then go straight to the upstreams: sending them to the
    // stub would make resolved ask a captured upstream, and the query would come back to us.
    capture = [...new Set([...resolvConf, ...local.resolvedUpstreams])]
    localUpstreams = [...new Set([...resolvConf.filter((s) => !isResolvedStub(s)), ...local.resolvedUpstreams])]
  }
  if (capture.length === 0) {
    throw new TunnelError('DNS_CONFIG', `--dns: no nameserver found in ${resolvConfPath}`, {
      hint: 'name the servers to capture with --ns-hosts IP[,IP]',
    })
  }
  if ((domains.length > 0 || autoDomains) && localUpstreams.length === 0) {
    throw new TunnelError('DNS_CONFIG', '--dns-domain: no original resolver to send the other names to', {
      hint: "systemd-resolved's upstreams are unknown here: give them with --ns-hosts",
    })
  }
  return { capture, localUpstreams, toNs, domains, ...(autoDomains && { autoDomains: true }), usesResolved: local.usesResolved, cache: a.cache, ...(a.allFamilies && { allFamilies: true }) }
}

/**
 * The interceptor's TCP check for nat/nft: a connection counts as redirected when its original
 * destination (SO_ORIGINAL_DST) is port 53 of a captured nameserver. One that was not
 * redirected reports our own address and port, or no original destination at all (throws).
 */
export function redirectedTo(
  servers: readonly string[],
  originalDst: (socket: net.Socket, family: 4 | 6) => { host: string; port: number },
): (socket: net.Socket, family: 4 | 6) => boolean {
  const captured = new Set(servers.map((s) => hostCidr(s).address))
  return (socket, family) => {
    const d = originalDst(socket, family)
    return d.port === 53 && net.isIP(d.host) !== 0 && captured.has(hostCidr(d.host).address)
  }
}

/** A running DNS path: interceptor → cache / split policy → tunnel or local resolver. */
export interface DnsRuntime {
  readonly capture: DnsCapture
  readonly remote: Destination[]
  readonly service: DnsService
  /** The split-DNS domains in force (given, and with `auto` the bastion's); empty: every name. */
  readonly domains: readonly string[]
  /** UDP answers on or off (held until the kernel's DNS guard is in place; see startDns). */
  answerUdp(on: boolean): void
  stop(): Promise<void>
}

/**
 * Finds the remote resolvers, then starts resolvers, service and interceptor. `readRemote`
 * returns the bastion's /etc/resolv.conf (through an exec channel); it is not called when
 * --to-ns was given.
 */
export async function startDns(plan: DnsPlan, deps: DnsDeps): Promise<DnsRuntime> {
  const { log } = deps
  let bastionConf: string | undefined
  const readOnce = async (): Promise<string> => (bastionConf ??= await deps.readRemote())
  const remote = plan.toNs.length > 0 ? plan.toNs : await remoteFromBastion(readOnce)
  const domains = plan.autoDomains ? [...new Set([...plan.domains, ...(await bastionDomains(readOnce, log))])] : plan.domains
  const stack: { stop(): unknown }[] = []
  try {
    const tunnel = new TunnelResolver({ dialer: deps.dialer, servers: remote, log })
    stack.push({ stop: () => tunnel.close() })
    let local: UpstreamResolver | undefined
    if (domains.length > 0) {
      local = new UpstreamResolver({ servers: plan.localUpstreams.map((host) => ({ host, port: 53 })), log })
      await local.start()
      stack.push({ stop: () => local!.close() })
    }
    // With split DNS, reverse lookups (PTR) of the tunnelled subnets belong to the remote side too.
    const policy =
      domains.length > 0 ? new SplitDnsPolicy(domains, deps.includes.flatMap((c) => reverseZones(c))) : undefined
    const emptyFamilies = plan.allFamilies ? [] : untunnelledFamilies(deps.includes)
    if (emptyFamilies.length > 0) {
      const [ip, q] = emptyFamilies[0] === 6 ? ['IPv6', 'AAAA'] : ['IPv4', 'A']
      log.verbose('dns', `no ${ip} subnet is tunnelled: ${q} queries through the tunnel get an empty answer, so clients do not try addresses the tunnel does not carry (--dns-all-families keeps them)`)
    }
    const learnt = deps.learnt
    const service = new DnsService({
      tunnel,
      local,
      policy,
      cache: plan.cache ? new DnsCache() : undefined,
      log,
      onAnswered: deps.onAnswered,
      ...(deps.refuseTunnel && { refuseTunnel: deps.refuseTunnel }),
      ...(emptyFamilies.length > 0 && { emptyFamilies }),
      // --route-by-name: only names under the given domains (not the reverse zones) teach routes.
      ...(learnt && domains.length > 0 && { beforeAnswer: learnBefore(learnt, new SplitDnsPolicy(domains)) }),
    })
    const interceptor = new DnsInterceptor({
      handler: service,
      port: 0,
      // IPv6 only when an IPv6 nameserver is captured: no rule redirects anything else there.
      ipv6: plan.capture.some((s) => net.isIPv6(s)),
      // Gateway mode: queries from other hosts are redirected to the incoming interface's
      // address, which may change (DHCP): every address, guarded by the kernel instead — on a
      // port of its own, since this machine's queries must be answered from 127.0.0.1.
      ...(deps.gateway && { gatewayPort: 0 }),
      ...(deps.udp === false && { udp: false }),
      ...(deps.holdUdp && { holdUdp: true }),
      ...(deps.isRedirected && { isRedirected: deps.isRedirected }),
      reserve: deps.reserve,
      log,
    })
    await interceptor.start()
    stack.push({ stop: () => interceptor.stop() })
    if (plan.usesResolved && (await flushResolvedCache())) log.verbose('dns', 'flushed the systemd-resolved cache')
    return {
      capture: {
        servers: plan.capture,
        port: interceptor.port,
        ...(interceptor.gatewayPort !== undefined && { gatewayPort: interceptor.gatewayPort }),
        exemptSourcePorts: local ? local.exemptPorts() : [],
      },
      remote,
      service,
      domains,
      answerUdp: (on) => interceptor.answerUdp(on),
      stop: async () => {
        for (const s of stack.reverse()) await s.stop()
        if (plan.usesResolved) await flushResolvedCache()
      },
    }
  } catch (e) {
    for (const s of stack.reverse()) await Promise.resolve(s.stop()).catch(() => {})
    throw e
  }
}

/**
 * The address families no tunnelled subnet belongs to (none when nothing is tunnelled): with
 * only IPv4 subnets an AAAA answer sends IPv6-first clients (psql, curl) to an address the
 * tunnel does not carry, where they wait for a timeout before trying IPv4.
 */
export function untunnelledFamilies(includes: readonly Cidr[]): Array<4 | 6> {
  if (includes.length === 0) return []
  return ([4, 6] as const).filter((f) => !includes.some((c) => c.family === f))
}

/** What startDns needs from the running tunnel. */
export interface DnsDeps {
  dialer: Dialer
  readRemote: () => Promise<string>
  includes: readonly Cidr[]
  log: Logger
  /**
   * Also listen on every address, on a second port: the kernel redirects other hosts' queries
   * to the incoming interface's address (this machine's own still go to 127.0.0.1).
   */
  gateway?: boolean
  /** nat/nft: whether a TCP connection was redirected by our rules (see DnsInterceptor). */
  isRedirected?: (socket: net.Socket, family: 4 | 6) => boolean
  /** The kernel will guard the port (gateway, --owner-only): hold UDP until answerUdp(true). */
  holdUdp?: boolean
  /** Serve UDP (default true); the TUN engine answers UDP itself. */
  udp?: boolean
  onAnswered?: (e: AnsweredQuery) => void
  /** TCP DNS clients are reset while free descriptors are below it. */
  reserve?: DescriptorReserve
  /** --fail-closed: while true, tunnelled names are answered REFUSED (see DnsService). */
  refuseTunnel?: () => boolean
  /** --route-by-name: where the addresses of answers for names under the domains go. */
  learnt?: Pick<LearntRoutes, 'learn'>
}

/** The beforeAnswer hook of --route-by-name: the answer's A/AAAA for a name under the domains. */
function learnBefore(learnt: Pick<LearntRoutes, 'learn'>, domains: SplitDnsPolicy): (qname: string, answer: Buffer) => Promise<void> {
  return async (qname, answer) => {
    if (domains.route(qname) !== 'tunnel') return
    const addresses = answerAddresses(answer)
    if (addresses.length > 0) await learnt.learn(normalizeDomain(qname), addresses)
  }
}

/** Most domains `--dns-domain auto` takes from the bastion (glibc reads at most 6 search domains). */
const MAX_AUTO_DOMAINS = 8

/**
 * `--dns-domain auto`: the search/domain line of the bastion's resolv.conf. What the bastion
 * says decides which of this machine's queries leave through the tunnel, so single labels (a
 * top-level domain such as `com`) and the root are refused, and the list is bounded.
 */
async function bastionDomains(readRemote: () => Promise<string>, log: Logger): Promise<string[]> {
  const hint = 'name the domains: --dns-domain corp.internal'
  let text: string
  try {
    text = await readRemote()
  } catch (e) {
    throw new TunnelError('DNS_CONFIG', `--dns-domain auto: cannot read the bastion's /etc/resolv.conf: ${errorMessage(e)}`, { hint, cause: e })
  }
  const chosen: string[] = []
  for (const raw of parseResolvConf(text).search) {
    const d = normalizeDomain(raw)
    const why = !DOMAIN.test(d) ? 'not a domain' : !d.includes('.') ? 'a top-level domain: every name under it would go to the bastion' : chosen.length >= MAX_AUTO_DOMAINS ? `more than ${MAX_AUTO_DOMAINS}` : undefined
    if (why) log.verbose('dns', `--dns-domain auto: not ${JSON.stringify(raw.slice(0, 64))}: ${why}`)
    else if (!chosen.includes(d)) chosen.push(d)
  }
  if (chosen.length === 0) {
    throw new TunnelError('DNS_CONFIG', "--dns-domain auto: the bastion's /etc/resolv.conf has no usable search or domain line", { hint })
  }
  log.info('dns', `--dns-domain auto: ${chosen.join(', ')} (from the bastion's resolv.conf)`)
  return chosen
}

async function remoteFromBastion(readRemote: () => Promise<string>): Promise<Destination[]> {
  const hint = "give the bastion-side resolver with --to-ns IP (e.g. the one in the bastion's /etc/resolv.conf)"
  let text: string
  try {
    text = await readRemote()
  } catch (e) {
    throw new TunnelError('DNS_CONFIG', `--dns: cannot read the bastion's /etc/resolv.conf: ${errorMessage(e)}`, { hint, cause: e })
  }
  const servers = remoteResolvers(text)
  if (servers.length === 0) {
    const first = text.trim().split('\n')[0]?.slice(0, 120) ?? ''
    throw new TunnelError(
      'DNS_CONFIG',
      `--dns: no nameserver in the bastion's /etc/resolv.conf${first ? ` (it said: "${first}")` : ''}; the account may not be allowed to run commands`,
      { hint },
    )
  }
  return servers
}
