import { randomBytes } from 'node:crypto'
import { type Cidr, formatCidr } from '../config/cidr'
import type { SshHostConfig } from '../config/ssh-config-types'
import { localAddressNetworks, transportExcludes } from '../config/subnets'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { ProcessInfo } from '../status/status-types'
import { AuditLog } from '../status/audit-log'
import { ConnProcesses } from '../status/proc-lookup'
import { firewallFor, selectMethod } from '../platform/firewall/choose-method'
import { defaultHelperLaunch, type HelperClient, startHelper } from '../platform/helper/helper-client'
import { fdHeadroom, openFdCount, openFilesLimit } from '../platform/os/fd-limit'
import { getOriginalDst } from '../platform/os/original-dst'
import { pfOriginalDst } from '../platform/os/pf-original-dst'
import { objectName } from '../platform/firewall/naming'
import type { CaptureSpec, MethodName } from '../platform/firewall/types'
import { ConnTracker } from '../router/conn-tracker'
import { DescriptorReserve } from '../router/descriptor-reserve'
import { RouteTable } from '../router/route-table'
import { RoutingDialer } from '../router/routing-dialer'
import { TransparentListener } from '../router/transparent'
import type { Dialer } from '../router/types'
import { builtinEngine } from '../ssh/builtin/engine'
import type { SshConnection } from '../ssh/engine'
import { SessionPool } from '../ssh/pool'
import { describeGatewayScope } from './capture-scope'
import { type DnsRuntime, redirectedTo, startDns } from './dns-setup'
import { type FrontEndHandle, startFrontEnds } from './front-ends'
import { startTun, type TunHandle } from './tun-setup'
import type { TunnelPlan } from './tunnel-plan'
import { formatHostPort } from '../config/host-port'

/** Everything that must be undone, newest first. Each step is best-effort and logged. */
export class Teardown {
  private readonly steps: { what: string; run: () => Promise<unknown> }[] = []
  constructor(private readonly log: Logger) {}
  push(what: string, run: () => Promise<unknown>): void {
    this.steps.unshift({ what, run })
  }
  async run(): Promise<void> {
    for (const s of this.steps.splice(0)) {
      try {
        await s.run()
      } catch (e) {
        this.log.warn('cli', `teardown: ${s.what}: ${errorMessage(e)}`)
      }
    }
  }
}

/**
 * A running tunnel: SSH sessions (one per bastion), the router, the transparent listener and
 * kernel rules when subnets are routed, DNS, proxies and forwards. start() brings them up in an
 * order that never leaves a redirect without a listener; stop() undoes exactly what was done.
 */
export class TunnelRuntime {
  readonly instanceId = randomBytes(4).toString('hex')
  readonly tracker = new ConnTracker()
  readonly sessions = new Map<string, SshConnection>()
  /** The SSH connection pool of each bastion (its first session is the one in `sessions`). */
  readonly pools = new Map<string, SessionPool>()
  readonly startedAt = Date.now()
  helper?: HelperClient
  method?: { method: MethodName; why: string }
  listener?: TransparentListener
  /** --method tun: the device and its engine. */
  tun?: TunHandle
  dns?: DnsRuntime
  routes = new RouteTable()
  dialer?: RoutingDialer
  frontEnds: FrontEndHandle[] = []
  audit?: AuditLog
  /** The kernel guards the DNS interceptor's ports (nat/nft with --gateway or --owner-only). */
  private dnsGuarded = false
  /** Local processes of connections (set when the audit log looks them up). */
  processes?: { get(id: number): ProcessInfo | null | undefined }
  /**
   * Descriptors the proxies, exposed -L forwards and TCP DNS leave to the transparent listener
   * and to clients already connected (undefined where the count is unknown: not Linux).
   */
  readonly reserve: DescriptorReserve | undefined
  private readonly teardown: Teardown

  constructor(
    readonly plan: TunnelPlan,
    private readonly log: Logger,
  ) {
    this.teardown = new Teardown(log)
    const limit = openFilesLimit()
    this.reserve = limit === undefined ? undefined : new DescriptorReserve({ limit, openCount: openFdCount })
  }

  /** Register extra cleanup (pidfile, control socket) to run with stop(). */
  onStop(what: string, run: () => Promise<unknown>): void {
    this.teardown.push(what, run)
  }

  async start(opts: { auditLog?: string; auditDns?: boolean } = {}): Promise<void> {
    const { plan, log } = this
    // 0. The audit log first, so no connection is missed; a bad path fails before anything else.
    if (opts.auditLog) {
      const processes = new ConnProcesses()
      this.tracker.observe(processes)
      this.processes = processes
      const audit = await AuditLog.open(opts.auditLog, {
        log,
        processes,
        remoteFor: (dst) => this.dialer?.remoteFor(dst.host),
      })
      this.tracker.observe(audit)
      this.audit = audit
      this.teardown.push('close audit log', () => audit.close())
    }
    // 1. Privileged side, only when kernel capture is needed. It runs alongside the SSH
    //    connect (start-up time is the slower of the two, not their sum), except when sudo may
    //    ask for a password: then it goes first, so the sudo and SSH prompts never share the
    //    terminal, and a missing firewall fails before any passphrase prompt.
    const ipv6 = plan.includes.some((i) => i.cidr.family === 6) || (plan.dns?.capture.some((s) => s.includes(':')) ?? false)
    let privileged: Promise<void> | undefined
    if (plan.capture) {
      privileged = this.startPrivileged(ipv6)
      if (defaultHelperLaunch().interactive) await privileged
    }

    // 2. SSH: one connection per bastion, authenticated in parallel (prompts are serialised by the TTY).
    const engine = builtinEngine({ log })
    const dialers = new Map<string, Dialer>()
    const pools: SessionPool[] = []
    for (const r of plan.remotes) {
      const make = (): SshConnection => {
        const s = engine.connection(r)
        // Clients of a dead SSH connection get a reset rather than a clean EOF: the connection
        // fails exactly its own channels (other pool connections' clients are untouched).
        let lost = false
        s.on('down', (why: unknown) => {
          lost = true
          log.warn('ssh', `${r.name}: connection lost: ${errorMessage(why)}; reconnecting`)
        })
        s.on('up', () => {
          if (lost) log.info('ssh', `${r.name}: connection re-established`)
          lost = false
        })
        return s
      }
      const session = make()
      this.sessions.set(r.name, session)
      this.teardown.push(`close SSH connection to ${r.name}`, () => session.close())
      // One sshd process holds ~1,000 channels under the usual open-files limit: more
      // connections open on demand (or at start with --connections).
      const pool = new SessionPool(session, { make, max: plan.connectionsMax, log })
      this.teardown.push(`close extra SSH connections to ${r.name}`, () => pool.closeExtra())
      pools.push(pool)
      this.pools.set(r.name, pool)
      dialers.set(r.name, pool)
    }
    const ssh = Promise.all([...this.sessions.values()].map((s) => s.start()))
    // The helper's error wins, and is reported at once, even while SSH still waits for a
    // passphrase (stop() then closes the half-open sessions).
    ssh.catch(() => {})
    await privileged
    await ssh
    if (plan.connections > 1) await Promise.all(pools.map((p) => p.prestart(plan.connections)))

    // 3. Routes: the user's subnets, minus excludes, minus our own transports and this machine.
    const own: Cidr[] = []
    for (const r of plan.remotes) own.push(...(await transportExcludes(transportHosts(r.target, r.hops))))
    for (const c of own) log.verbose('route', `excluding SSH transport address ${formatCidr(c)}`)
    const local = plan.capture ? localAddressNetworks() : []
    const excludes = [...plan.userExcludes, ...own, ...local]
    const routeEntries = [
      ...plan.includes.map((i) => ({ cidr: i.cidr, action: 'tunnel' as const, via: i.via })),
      ...excludes.map((cidr) => ({ cidr, action: 'direct' as const })),
    ]
    this.routes = new RouteTable(routeEntries)
    const dialer = new RoutingDialer(this.routes, dialers, plan.defaultRemote)
    this.dialer = dialer

    // 4. DNS through the default remote.
    const defaultSession = this.sessions.get(plan.defaultRemote)!
    if (plan.dns) {
      const readRemote = async (): Promise<string> => {
        const r = await defaultSession.exec('cat /etc/resolv.conf')
        if (r.code !== 0) throw new Error(`exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`)
        return r.stdout
      }
      const audit = opts.auditDns ? this.audit : undefined
      const fw = this.method && firewallFor(this.method.method)
      // nat/nft: the interceptor answers only what our rules redirected (TCP: SO_ORIGINAL_DST;
      // UDP: a kernel guard, when anyone but us could reach the port: gateway, --owner-only).
      const firewall = fw?.guardsDns === true
      this.dnsGuarded = firewall && (plan.gateway || plan.ownerUid !== undefined)
      const dns = await startDns(plan.dns, {
        dialer,
        reserve: this.reserve,
        readRemote,
        includes: plan.includes.map((i) => i.cidr),
        log,
        gateway: plan.gateway,
        ...(firewall && { isRedirected: redirectedTo(plan.dns.capture, getOriginalDst) }),
        ...(this.dnsGuarded && { holdUdp: true }),
        // A device backend's engine answers UDP itself.
        ...(fw?.capture === 'device' && { udp: false }),
        onAnswered: audit ? (e) => audit.recordDns(e) : undefined,
      })
      this.dns = dns
      this.teardown.push('stop DNS', () => dns.stop())
      log.verbose('dns', `capturing DNS to ${plan.dns.capture.join(', ')}; resolving via ${dns.remote.map((d) => `${d.host}:${d.port}`).join(', ')}`)
    }

    // 5. Proxies and forwards (no root needed).
    if (this.reserve) {
      log.verbose('route', `keeping ${this.reserve.reserve} of ${this.reserve.limit} file descriptors for the tunnel and connected clients: proxies, -L from other hosts and TCP DNS take no new client below that`)
    }
    this.frontEnds = await startFrontEnds(plan, { dialer, sessions: this.sessions, tracker: this.tracker, log, reserve: this.reserve })
    this.teardown.push('stop proxies and forwards', async () => {
      for (const f of this.frontEnds) await f.stop()
    })

    // 6. Listener, then rules: a redirect must never point at a port nobody listens on.
    //    --method tun has no listener: the device and its routes, then the engine on it.
    const capture = this.method && firewallFor(this.method.method)
    if (plan.capture && this.helper && capture?.capture === 'device') {
      this.tun = await startTun({
        instanceId: this.instanceId,
        helper: this.helper,
        engine: plan.tunEngine ?? 'builtin',
        include: plan.includes.map((i) => i.cidr),
        exclude: excludes,
        localHosts: [...own, ...local],
        routeEntries,
        dialer,
        tracker: this.tracker,
        dns: this.dns,
        localUpstreams: plan.dns?.domains.length ? plan.dns.localUpstreams : [],
        log,
        ...(plan.ownerUid !== undefined && { ownerUid: plan.ownerUid }),
        onStop: (what, run) => this.teardown.push(what, run),
        // The engine cannot run (or the device vanished): stop the way a signal would, so
        // everything is torn down in order.
        onFatal: (e) => {
          log.error('route', `${e.message}${e.hint ? ` (${e.hint})` : ''}`)
          process.kill(process.pid, 'SIGTERM')
        },
      })
    } else if (plan.capture && this.helper && this.method) {
      const listener = new TransparentListener({
        host: plan.gateway ? '0.0.0.0' : plan.listen.host,
        // In PREROUTING the kernel redirects to the incoming interface's address, not loopback.
        // Every address (it may change), and refusing what was not redirected (SO_ORIGINAL_DST);
        // which interfaces and sources are served is decided by the kernel rules.
        ...(plan.gateway ? { host6: '::' } : {}),
        port: plan.listen.port,
        ipv6,
        routes: this.routes,
        dialer,
        // pf (macOS) has no SO_ORIGINAL_DST: the helper asks /dev/pf for each connection.
        originalDst: capture?.originalDst === 'lookup' ? pfOriginalDst(this.helper) : getOriginalDst,
        connectionBudget: fdHeadroom(),
        log,
        tracker: this.tracker,
      })
      await listener.start()
      this.listener = listener
      this.teardown.push('stop listener', () => listener.stop())
      const spec: CaptureSpec = {
        instanceId: this.instanceId,
        listenPort: listener.port,
        include: plan.includes.map((i) => i.cidr),
        exclude: excludes,
        dns: this.dns?.capture,
        ...(plan.gateway ? { gateway: true } : {}),
        ...(plan.gatewayScope?.interfaces && { gatewayInterfaces: plan.gatewayScope.interfaces }),
        ...(plan.gatewayScope?.sources && { gatewaySources: plan.gatewayScope.sources }),
        ...(plan.ownerUid !== undefined && { ownerUid: plan.ownerUid }),
      }
      const helper = this.helper
      await helper.apply(this.method.method, spec)
      this.teardown.push('remove firewall rules', () =>
        helper.revert().catch((e: unknown) => {
          // The helper died (killed, crashed) and took the only root access with it: say what
          // may remain and how to remove it; the state journal lets cleanup find it.
          throw new Error(`${errorMessage(e)}; rules of ${objectName(this.instanceId)} may remain: remove them with \`sudo subnet-tunnel cleanup\``)
        }),
      )
      // The DNS guard is in place now: answer UDP. Hold it again before the rules go (this
      // step runs first), so the port is never open without the guard.
      const dns = this.dns
      if (dns && this.dnsGuarded) {
        dns.answerUdp(true)
        this.teardown.push('hold DNS answers', async () => dns.answerUdp(false))
      }
    }

  }

  /** Starts the privileged helper (it also removes what dead instances left) and picks the method. */
  private async startPrivileged(ipv6: boolean): Promise<void> {
    // The tun grant is asked for only when tun is the method: it needs its own sudoers rule.
    const helper = await startHelper({ log: this.log, allowTun: this.plan.tunEngine !== undefined })
    this.helper = helper
    this.teardown.push('stop privileged helper', () => helper.close())
    this.method = await selectMethod(this.plan.method, (m) => helper.probe(m, { ipv6 }))
    this.log.verbose('fw', `method ${this.method.method}: ${this.method.why}`)
  }

  async stop(): Promise<void> {
    await this.teardown.run()
  }

  /** The one line printed once everything is up. */
  upLine(): string {
    const { plan } = this
    const parts: string[] = []
    const remotes = plan.remotes.map((r) => {
      const via = r.hops.length ? ` via ${r.hops.map(hostPort).join(',')}` : ''
      const nets = plan.includes.filter((i) => (i.via ?? plan.defaultRemote) === r.name).map((i) => formatCidr(i.cidr))
      return `${r.target.user}@${hostPort(r.target)}${via}${plan.remotes.length > 1 && nets.length ? ` for ${nets.join(', ')}` : ''}`
    })
    parts.push(`remote ${remotes.join('; ')}`)
    if (plan.includes.length) {
      const inc = plan.includes.map((i) => formatCidr(i.cidr)).join(', ')
      const exc = plan.userExcludes.length ? ` (excluding ${plan.userExcludes.map(formatCidr).join(', ')})` : ''
      parts.push(`subnets ${inc}${exc}`)
      if (this.method) {
        const gw = plan.gatewayScope ? ` (gateway: ${describeGatewayScope(plan.gatewayScope)})` : ''
        const owner = plan.ownerUid !== undefined ? ` (owner uid ${plan.ownerUid} only)` : ''
        parts.push(`method ${this.method.method}${gw}${owner}`)
      }
      if (this.listener) parts.push(`listener ${plan.gateway ? '0.0.0.0' : plan.listen.host}:${this.listener.port}`)
      if (this.tun) parts.push(`device ${this.tun.device} (engine ${this.tun.engine}${this.tun.engineVersion ? ` ${this.tun.engineVersion}` : ''})`)
    }
    for (const f of this.frontEnds) parts.push(f.describe())
    if (this.dns) {
      const doms = plan.dns?.domains.length ? ` for ${plan.dns.domains.join(', ')}` : ''
      parts.push(`DNS via ${this.dns.remote.map((d) => formatHostPort(d.host, d.port)).join(', ')}${doms}`)
    }
    return `subnet-tunnel up: ${parts.join(', ')}`
  }
}

function hostPort(c: SshHostConfig): string {
  return formatHostPort(c.hostName, c.port)
}

/** Hosts our SSH transport connects to from this machine (the first hop, or the target). */
function transportHosts(target: SshHostConfig, hops: readonly SshHostConfig[]): string[] {
  const first = hops[0] ?? target
  if (first.proxyCommand) return [] // we cannot know where a ProxyCommand connects
  return [first.hostName, ...hops.slice(1).map((h) => h.hostName), target.hostName]
}

