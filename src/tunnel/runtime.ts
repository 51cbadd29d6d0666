import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { type Cidr, cidrContains, formatCidr } from '../config/cidr'
import { formatHostPort } from '../config/host-port'
import type { SshHostConfig } from '../config/ssh-config-types'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { firewallFor, type MethodChoice, selectMethod } from '../platform/firewall/choose-method'
import { tunTable } from '../platform/firewall/tun-naming'
import { openFdCount, openFilesLimit } from '../platform/os/fd-limit'
import { getOriginalDst } from '../platform/os/original-dst'
import { ConnTracker } from '../router/conn-tracker'
import { DescriptorReserve } from '../router/descriptor-reserve'
import { type RouteEntry, RouteTable } from '../router/route-table'
import { LearningRouteTable } from '../router/learning-route-table'
import { LearntRoutes } from '../router/learnt-routes'
import { RoutingDialer } from '../router/routing-dialer'
import type { Dialer } from '../router/types'
import type { SshConnection } from '../ssh/engine'
import { SessionPool } from '../ssh/pool'
import { AuditLog } from '../status/audit-log'
import { ConnProcesses } from '../status/proc-lookup'
import type { ProcessInfo } from '../status/status-types'
import { discoverAutoNets, localInterfaceNetworks } from './auto-nets-setup'
import { startCapture } from './capture'
import { type DnsRuntime, redirectedTo } from './dns-setup'
import { type CaptureListener, type Helper, type RuntimeFactories, realFactories } from './factories'
import type { FrontEndHandle } from './front-ends'
import type { TunnelPlan } from './plan'
import { FailClosedSwitch, sshDown } from './fail-closed'
import { startNetReconnect } from './net-reconnect'
import { Teardown } from './teardown'
import type { TunHandle } from './tun-setup'
import { upLine } from './up-line'
import { probeForwarding } from './forward-probe'

/**
 * A running tunnel: SSH connections (a pool per bastion), the router, the transparent listener
 * and kernel rules (or the TUN device) when subnets are routed, DNS, proxies and forwards.
 * start() brings them up in an order that never leaves a redirect without a listener; stop()
 * undoes exactly what was done, newest first. Everything it starts comes from `make`
 * (factories.ts), so the order is unit-tested with fakes.
 *
 * Emits 'fatal' (TunnelError) when a part it cannot do without gives up after start (the
 * external TUN engine, the TUN device): whoever runs it should stop() it.
 */
export class TunnelRuntime extends EventEmitter {
  readonly instanceId = randomBytes(4).toString('hex')
  readonly tracker = new ConnTracker()
  /** The first SSH connection of each bastion. */
  readonly sessions = new Map<string, SshConnection>()
  /** The SSH connection pool of each bastion (its first connection is the one in `sessions`). */
  readonly pools = new Map<string, SessionPool>()
  readonly startedAt = Date.now()
  helper?: Helper
  method?: MethodChoice
  listener?: CaptureListener
  /** --method tun: the device and its engine. */
  tun?: TunHandle
  dns?: DnsRuntime
  routes = new RouteTable()
  dialer?: RoutingDialer
  frontEnds: FrontEndHandle[] = []
  audit?: AuditLog
  /** --fail-closed: the guard's switch (after the capture is up). */
  failClosed?: FailClosedSwitch
  /** --route-by-name: the addresses learnt from DNS answers. */
  learnt?: LearntRoutes
  /** Excludes the user did not name, by origin (for the routes view). */
  excludeOrigins: { transport: readonly Cidr[]; local: readonly Cidr[] } = { transport: [], local: [] }
  /** The first 'fatal' error, for whoever starts listening after it was emitted. */
  fatal?: TunnelError
  /** Local processes of connections (set when the audit log looks them up). */
  processes?: { get(id: number): ProcessInfo | null | undefined }
  /**
   * Descriptors the proxies, exposed -L forwards and TCP DNS leave to the transparent listener
   * and to clients already connected (undefined where the count is unknown: not Linux).
   */
  readonly reserve: DescriptorReserve | undefined
  private readonly teardown: Teardown
  /** stop() ran: a helper that becomes ready after it (start() failed early) closes at once. */
  private stopped = false

  constructor(
    /** Replaced once at start when --auto-nets adds the bastion's networks to the includes. */
    public plan: TunnelPlan,
    private readonly log: Logger,
    private readonly make: RuntimeFactories = realFactories(),
  ) {
    super()
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
    if (opts.auditLog) await this.openAudit(opts.auditLog)
    // 1. Privileged side, only when kernel capture is needed. It runs alongside the SSH
    //    connect (start-up time is the slower of the two, not their sum), except when sudo may
    //    ask for a password: then it goes first, so the sudo and SSH prompts never share the
    //    terminal, and a missing firewall fails before any passphrase prompt.
    // Networks found later (auto-nets, names) may be IPv6: the method must then handle IPv6 too.
    const ipv6 =
      plan.includes.some((i) => i.cidr.family === 6) || (plan.dns?.capture.some((s) => s.includes(':')) ?? false) || plan.autoNets === true || plan.routeByName === true
    let privileged: Promise<void> | undefined
    if (plan.capture) {
      privileged = this.startPrivileged(ipv6)
      if (this.make.helperMayPrompt()) await privileged
    }

    // 2. SSH: one connection per bastion, authenticated in parallel (prompts are serialised by the TTY).
    const dialers = this.openSsh()
    const ssh = Promise.all([...this.sessions.values()].map((s) => s.start()))
    // Whichever fails first is reported at once: the helper's error even while SSH still waits
    // for a passphrase, a refused SSH connection without waiting for the helper to be ready
    // (stop() closes the half-open connections and a helper that is still starting).
    ssh.catch(() => {})
    privileged?.catch(() => {})
    await Promise.all([privileged, ssh])
    // A bastion that forwards nothing is refused now, not after the first connection is reset.
    // Remote forwards (-R) alone use no direct channel.
    const direct = plan.includes.length + plan.socks.length + plan.http.length + plan.localForwards.length > 0 || plan.dns !== undefined
    if (plan.forwardCheck !== false && direct) {
      await Promise.all([...this.sessions].map(([name, s]) => probeForwarding(s, name, log)))
    }
    if (plan.connections > 1) await Promise.all([...this.pools.values()].map((p) => p.prestart(plan.connections)))

    // 3. Routes: the user's subnets (and with --auto-nets the bastion's), minus excludes, minus
    //    our own transports and this machine.
    const own: Cidr[] = []
    for (const r of plan.remotes) own.push(...(await this.make.transportExcludes(transportHosts(r.target, r.hops))))
    for (const c of own) log.verbose('route', `excluding SSH transport address ${formatCidr(c)}`)
    if (plan.autoNets) this.plan = await this.addAutoNets(own)
    const local = plan.capture ? this.make.localNetworks() : []
    const autoExcludes = (this.plan.autoExcludes ?? []).map((x) => x.cidr)
    const excludes = [...this.plan.userExcludes, ...autoExcludes, ...own, ...local]
    const routeEntries: RouteEntry[] = [
      ...this.plan.includes.map((i) => ({ cidr: i.cidr, action: 'tunnel' as const, via: i.via })),
      ...excludes.map((cidr) => ({ cidr, action: 'direct' as const })),
    ]
    if (plan.routeByName) {
      const learnt = this.newLearntRoutes(new RouteTable(routeEntries))
      this.learnt = learnt
      this.routes = new LearningRouteTable(routeEntries, learnt)
      this.teardown.push('stop learning routes from DNS answers', async () => learnt.stop())
    } else {
      this.routes = new RouteTable(routeEntries)
    }
    this.excludeOrigins = { transport: own, local }
    const dialer = new RoutingDialer(this.routes, dialers, plan.defaultRemote)
    this.dialer = dialer

    // 4. DNS through the default remote.
    const fw = this.method && firewallFor(this.method.method)
    // nat/nft with gateway or --owner-only: a kernel guard lets only redirected queries reach UDP.
    const dnsGuarded = fw?.guardsDns === true && (plan.gateway || plan.ownerUid !== undefined)
    if (this.plan.dns) await this.startDnsPath(dialer, dnsGuarded, opts.auditDns === true)

    // 5. Proxies and forwards (no root needed).
    if (this.reserve) {
      log.verbose('route', `keeping ${this.reserve.reserve} of ${this.reserve.limit} file descriptors for the tunnel and connected clients: proxies, -L from other hosts and TCP DNS take no new client below that`)
    }
    this.frontEnds = await this.make.frontEnds(this.plan, { dialer, sessions: this.sessions, tracker: this.tracker, log, reserve: this.reserve })
    this.teardown.push('stop proxies and forwards', async () => {
      for (const f of this.frontEnds) await f.stop()
    })

    // 6. Kernel capture: listener then rules, or the TUN device then its engine (capture.ts).
    if (plan.capture && this.helper && this.method) {
      const started = await startCapture({
        instanceId: this.instanceId,
        plan: this.plan,
        helper: this.helper,
        method: this.method.method,
        excludes,
        localHosts: [...own, ...local],
        routeEntries,
        routes: this.routes,
        dialer,
        tracker: this.tracker,
        dns: this.dns,
        ...(this.learnt && { learnt: this.learnt }),
        dnsGuarded,
        ipv6,
        log,
        make: this.make,
        onStop: (what, run) => this.teardown.push(what, run),
        // Stop the way a signal would, so everything is torn down in order: the CLI decides.
        onFatal: (e: TunnelError) => {
          this.fatal ??= e
          this.emit('fatal', e)
        },
      })
      this.listener = started.listener
      this.tun = started.tun
      // Only now does the kernel capture exist that learnt addresses are added to.
      const helper = this.helper
      this.learnt?.attach((entries) => helper.learn(entries))
      if (plan.failClosed) await this.startGuard(excludes)
    }

    // 7. A change of the route to a bastion, or a resume, redials at once (net-reconnect.ts).
    await this.watchNetwork()
  }

  /** --fail-closed: the guard, built once every exclude (the SSH transport included) is known. */
  private async startGuard(excludes: readonly Cidr[]): Promise<void> {
    const sw = new FailClosedSwitch({ helper: this.helper!, pools: () => [...this.pools.values()].map((p) => p.connections), log: this.log })
    await sw.start({
      instanceId: this.instanceId,
      include: this.plan.includes.map((i) => i.cidr),
      exclude: excludes,
      ...(this.plan.ownerUid !== undefined && { ownerUid: this.plan.ownerUid }),
    })
    this.failClosed = sw
  }

  private async watchNetwork(): Promise<void> {
    const { netWatcher, resolveHost } = this.make
    if (!netWatcher || !resolveHost || this.plan.netWatch === false) return
    const watch = await startNetReconnect({
      remotes: this.plan.remotes.map((r) => ({
        name: r.name,
        transportHost: transportHosts(r.target, r.hops)[0],
        connections: () => this.pools.get(r.name)?.connections ?? [],
      })),
      watcher: (o) => netWatcher(o, this.log),
      resolve: resolveHost,
      // Our own device's and routing table's changes are ours, not the network's.
      ignoreDevs: this.tun ? [this.tun.device] : [],
      ignoreTables: this.tun && process.platform === 'linux' ? [String(tunTable(this.instanceId))] : [],
      log: this.log,
    })
    this.teardown.push('stop watching the network', () => watch.stop())
  }

  /**
   * --auto-nets: asks the default bastion for its routes and returns the plan with the chosen
   * networks added (through the default remote) and their protected parts as excludes.
   */
  private async addAutoNets(own: readonly Cidr[]): Promise<TunnelPlan> {
    const { plan, log } = this
    const r = plan.remotes.find((x) => x.name === plan.defaultRemote)!
    // The addresses we dial: only when we connect straight to the bastion (no jump, no ProxyCommand).
    const direct = r.hops.length === 0 && !r.target.proxyCommand
    const found = await discoverAutoNets(this.sessions.get(plan.defaultRemote)!, {
      bastionAddresses: direct ? own.map((c) => c.address) : [],
      localNetworks: (this.make.interfaceNetworks ?? localInterfaceNetworks)(),
      log,
    })
    return {
      ...plan,
      includes: [...plan.includes, ...found.include.map((i) => ({ cidr: i.cidr, origin: 'auto-net' as const, why: i.why }))],
      autoExcludes: found.exclude.map((x) => ({ cidr: x.cidr, why: x.why })),
    }
  }

  /**
   * --route-by-name: what an answer's address must not be (excluded — the transport, this
   * machine's addresses, the user's — inside this machine's networks, or already tunnelled),
   * and when it is in use (an open connection keeps it past its TTL).
   */
  private newLearntRoutes(given: RouteTable): LearntRoutes {
    const ifaceNets = (this.make.interfaceNetworks ?? localInterfaceNetworks)()
    return new LearntRoutes({
      screen: (address) => {
        const e = given.lookup(address)
        if (e?.action === 'direct') return `excluded (${formatCidr(e.cidr)})`
        if (e?.action === 'tunnel') return `already tunnelled (${formatCidr(e.cidr)})`
        const mine = ifaceNets.find((n) => cidrContains(n, address))
        return mine ? `inside ${formatCidr(mine)}, a network of this machine` : undefined
      },
      inUse: (address) => {
        for (const c of this.tracker.active()) if (c.dst.host === address || c.dst.host === `::ffff:${address}`) return true
        return false
      },
      ...(this.plan.learnGraceS !== undefined && { graceS: this.plan.learnGraceS }),
      log: this.log,
    })
  }

  private async openAudit(file: string): Promise<void> {
    const processes = new ConnProcesses()
    this.tracker.observe(processes)
    this.processes = processes
    const audit = await AuditLog.open(file, { log: this.log, processes, remoteFor: (dst) => this.dialer?.remoteFor(dst.host) })
    this.tracker.observe(audit)
    this.audit = audit
    this.teardown.push('close audit log', () => audit.close())
  }

  /** Starts the privileged helper (it also removes what dead instances left) and picks the method. */
  private async startPrivileged(ipv6: boolean): Promise<void> {
    // The tun grant is asked for only when tun is the method: it needs its own sudoers rule.
    const helper = await this.make.helper({ log: this.log, allowTun: this.plan.tunEngine !== undefined })
    this.helper = helper
    if (this.stopped) {
      // start() failed (SSH refused) and stop() ran while the helper was still starting.
      await helper.close()
      throw new TunnelError('HELPER', 'stopped while the privileged helper started')
    }
    this.teardown.push('stop privileged helper', () => helper.close())
    // The helper removed what dead instances left in this namespace: say so once, here.
    const swept = helper.startupCleanup
    if (swept && swept.removed.length > 0) this.log.info('fw', `removed what a dead instance left behind: ${swept.removed.join(', ')}`)
    for (const w of swept?.warnings ?? []) this.log.warn('fw', `cleanup of a dead instance: ${w}`)
    this.method = await selectMethod(this.plan.method, (m) => helper.probe(m, { ipv6 }))
    this.log.verbose('fw', `method ${this.method.method}: ${this.method.why}`)
  }

  /** One pool of SSH connections per bastion (not started yet); their dialers by name. */
  private openSsh(): Map<string, Dialer> {
    const { plan, log } = this
    const engine = this.make.engine(log, plan)
    log.verbose('ssh', `engine ${engine.name}: ${plan.sshEngine.why}`)
    // Pushed first, so it runs after every connection has closed.
    if (engine.close) this.teardown.push('release the SSH engine', () => engine.close!())
    const dialers = new Map<string, Dialer>()
    for (const r of plan.remotes) {
      const make = (): SshConnection => {
        const c = engine.connection(r)
        // Clients of a dead SSH connection get a reset rather than a clean EOF: the connection
        // fails exactly its own channels (other pool connections' clients are untouched).
        let lost = false
        c.on('down', (why: unknown) => {
          lost = true
          log.warn('ssh', `${r.name}: connection lost: ${errorMessage(why)}; reconnecting`)
          this.failClosed?.update()
        })
        c.on('up', () => {
          if (lost) log.info('ssh', `${r.name}: connection re-established`)
          lost = false
          this.failClosed?.update()
        })
        return c
      }
      const first = make()
      this.sessions.set(r.name, first)
      this.teardown.push(`close SSH connection to ${r.name}`, () => first.close())
      // One sshd process holds ~1,000 channels under the usual open-files limit: more
      // connections open on demand (or at start with --connections).
      const pool = new SessionPool(first, { make, max: plan.connectionsMax, log })
      this.teardown.push(`close extra SSH connections to ${r.name}`, () => pool.closeExtra())
      this.pools.set(r.name, pool)
      dialers.set(r.name, pool)
    }
    return dialers
  }

  /** The DNS interceptor, cache and resolvers, through the default remote. */
  private async startDnsPath(dialer: Dialer, dnsGuarded: boolean, auditDns: boolean): Promise<void> {
    const { plan, log } = this
    const dnsPlan = plan.dns!
    const defaultSession = this.sessions.get(plan.defaultRemote)!
    const readRemote = async (): Promise<string> => {
      const r = await defaultSession.exec('cat /etc/resolv.conf')
      if (r.code !== 0) throw new Error(`exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`)
      return r.stdout
    }
    const audit = auditDns ? this.audit : undefined
    const fw = this.method && firewallFor(this.method.method)
    const dns = await this.make.dns(dnsPlan, {
      dialer,
      reserve: this.reserve,
      readRemote,
      includes: plan.includes.map((i) => i.cidr),
      log,
      gateway: plan.gateway,
      // nat/nft: the interceptor answers only what our rules redirected (TCP: SO_ORIGINAL_DST).
      ...(fw?.guardsDns && { isRedirected: redirectedTo(dnsPlan.capture, getOriginalDst) }),
      ...(dnsGuarded && { holdUdp: true }),
      // A device backend's engine answers UDP itself.
      ...(fw?.capture === 'device' && { udp: false }),
      onAnswered: audit ? (e) => audit.recordDns(e) : undefined,
      ...(plan.failClosed && { refuseTunnel: () => sshDown([...this.pools.values()].map((p) => p.connections)) }),
      ...(this.learnt && { learnt: this.learnt }),
    })
    this.dns = dns
    this.teardown.push('stop DNS', () => dns.stop())
    log.verbose('dns', `capturing DNS to ${dnsPlan.capture.join(', ')}; resolving via ${dns.remote.map((d) => formatHostPort(d.host, d.port)).join(', ')}`)
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.teardown.run()
  }

  /** The one line printed once everything is up. */
  upLine(): string {
    return upLine(this)
  }
}

/** Hosts our SSH transport connects to from this machine (the first hop, or the target). */
function transportHosts(target: SshHostConfig, hops: readonly SshHostConfig[]): string[] {
  const first = hops[0] ?? target
  if (first.proxyCommand) return [] // we cannot know where a ProxyCommand connects
  return [first.hostName, ...hops.slice(1).map((h) => h.hostName), target.hostName]
}
