import { formatCidr, hostCidr } from '../config/cidr'
import { formatHostPort } from '../config/host-port'
import type { LastProblem } from '../observe/last-problem'
import { currentNetns } from '../platform/helper/journal'
import { ConnProcesses } from '../status/proc-lookup'
import { type RouteStatus, type StatusSnapshot, trafficSnapshot } from '../status/status-types'
import { describeGatewayScope } from './capture-scope'
import { describeEngine } from './up-line'
import type { TunnelRuntime } from './runtime'

/** What the CLI knows of this instance beyond the runtime. */
export interface SnapshotExtras {
  readonly profile?: string
  readonly logFile?: string
  readonly lastProblem?: () => LastProblem | undefined
}

/** This process's network namespace, read once (it does not change). */
let netns: number | undefined

/** What is tunnelled and kept direct now, and why (`subnet-tunnel routes`). */
export function routeRows(rt: Pick<TunnelRuntime, 'plan' | 'learnt' | 'excludeOrigins'>): RouteStatus[] {
  const { plan } = rt
  const rows: RouteStatus[] = plan.includes.map((i) => ({
    net: formatCidr(i.cidr),
    action: 'tunnel' as const,
    origin: i.origin ?? 'given',
    ...(i.via && { via: i.via }),
    ...(i.why && { why: i.why }),
  }))
  for (const l of rt.learnt?.list() ?? []) {
    rows.push({ net: formatCidr(hostCidr(l.address)), action: 'tunnel', origin: 'learnt', why: l.names.join(', '), until: new Date(l.expiresAt).toISOString() })
  }
  for (const c of plan.userExcludes) rows.push({ net: formatCidr(c), action: 'direct', origin: 'excluded' })
  for (const x of plan.autoExcludes ?? []) rows.push({ net: formatCidr(x.cidr), action: 'direct', origin: 'auto-exclude', why: x.why })
  for (const c of rt.excludeOrigins.transport) rows.push({ net: formatCidr(c), action: 'direct', origin: 'transport' })
  for (const c of rt.excludeOrigins.local) rows.push({ net: formatCidr(c), action: 'direct', origin: 'local' })
  return rows
}

/** The status document of this instance, served on the control socket. */
export function buildSnapshot(rt: TunnelRuntime, version: string, extras: SnapshotExtras = {}): StatusSnapshot {
  const now = Date.now()
  const { plan } = rt
  const dnsStats = rt.dns?.service.stats()
  netns ??= process.platform === 'linux' ? currentNetns() : undefined
  const last = extras.lastProblem?.()
  return {
    pid: process.pid,
    version,
    instanceId: rt.instanceId,
    ...(netns !== undefined && { netns }),
    ...(extras.profile !== undefined && { profile: extras.profile }),
    ...(extras.logFile !== undefined && { logFile: extras.logFile }),
    ...(last && { lastError: last }),
    startedAt: new Date(rt.startedAt).toISOString(),
    uptimeS: Math.floor((now - rt.startedAt) / 1000),
    remotes: plan.remotes.map((r) => {
      const s = rt.sessions.get(r.name)
      // Channels are spread over every connection of the pool, not only the first one.
      const pooled = rt.pools.get(r.name)?.connections ?? (s ? [s] : [])
      return {
        name: r.name,
        hostPort: formatHostPort(r.target.hostName, r.target.port),
        state: s?.state ?? 'closed',
        reconnects: s?.stats.reconnects ?? 0,
        channelsOpen: pooled.reduce((n, p) => n + p.stats.channelsOpen, 0),
        sshConnections: pooled.filter((p) => p.state === 'up').length,
        ...(s ? { engine: describeEngine(s.describe()) } : {}),
      }
    }),
    subnets: plan.includes.map((i) => formatCidr(i.cidr) + (i.via ? `=${i.via}` : '')),
    excludes: plan.userExcludes.map(formatCidr),
    routes: routeRows(rt),
    ...(rt.method ? { method: rt.method.method } : {}),
    ...(rt.listener ? { listener: formatHostPort(plan.gateway ? '0.0.0.0' : plan.listen.host, rt.listener.port) } : {}),
    ...(plan.gatewayScope && rt.method ? { gateway: describeGatewayScope(plan.gatewayScope) } : {}),
    ...(plan.ownerUid !== undefined && rt.method ? { ownerUid: plan.ownerUid } : {}),
    ...(plan.execOnly && rt.method ? { execOnly: true as const } : {}),
    ...(rt.failClosed?.state ? { failClosed: rt.failClosed.state } : {}),
    ...(rt.tun
      ? { tun: { device: rt.tun.device, engine: rt.tun.engine, ...(rt.tun.engineVersion ? { engineVersion: rt.tun.engineVersion } : {}), restarts: rt.tun.restarts() } }
      : {}),
    proxies: rt.frontEnds.filter((f) => f.kind === 'socks5' || f.kind === 'http').map((f) => ({ kind: f.kind as 'socks5' | 'http', address: f.address })),
    forwards: rt.frontEnds
      .filter((f) => f.kind === 'local' || f.kind === 'remote')
      .map((f) => ({ kind: f.kind as 'local' | 'remote', spec: f.spec ?? '', address: f.address, ...(f.target && { target: f.target }) })),
    ...(rt.dns && dnsStats
      ? {
          dns: {
            servers: rt.dns.capture.servers.slice(),
            remote: rt.dns.remote.map((d) => formatHostPort(d.host, d.port)),
            queries: dnsStats.queries,
            cacheHits: dnsStats.cacheHits,
            tunnel: dnsStats.tunnel,
            local: dnsStats.local,
            failed: dnsStats.failed,
          },
        }
      : {}),
    ...trafficSnapshot(rt.tracker, rt.processes ? (id) => rt.processes?.get(id) ?? undefined : undefined, now),
  }
}

/** How long `status` waits for process lookups; what is not found by then shows "-". */
const LOOKUP_WAIT_MS = 1000

/** Per runtime: processes looked up when `status` asks, not for every connection (that is --audit-log's job). */
const onDemand = new WeakMap<TunnelRuntime, ConnProcesses>()

/**
 * The snapshot `status` gets: like buildSnapshot, with the local process of each open
 * connection filled in also without --audit-log. The lookups (a /proc scan each) run only
 * now, at most LOOKUP_WAIT_MS, and are kept until the connection closes, so a second
 * `status` answers at once.
 */
export async function snapshotForStatus(rt: TunnelRuntime, version: string, extras: SnapshotExtras = {}, waitMs = LOOKUP_WAIT_MS): Promise<StatusSnapshot> {
  if (!rt.processes || onDemand.has(rt)) {
    let procs = onDemand.get(rt)
    if (!procs) {
      const created = new ConnProcesses()
      procs = created
      onDemand.set(rt, created)
      rt.tracker.observe({ closed: (c) => created.forget(c.meta.id) })
      rt.processes = created
    }
    const looking = Promise.all(rt.tracker.active().map((c) => procs!.start(c)))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([looking, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))])
    clearTimeout(timer)
  }
  return buildSnapshot(rt, version, extras)
}


/**
 * The brief status other instances ask for to find this one (the clash check at start-up,
 * `stop`): the full document without the connection list, and never a /proc lookup.
 */
export function briefSnapshot(rt: TunnelRuntime, version: string, extras: SnapshotExtras = {}): StatusSnapshot {
  return { ...buildSnapshot(rt, version, extras), connections: [] }
}
