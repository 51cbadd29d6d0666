/**
 * The last step of start-up: the kernel capture. A listener backend gets the transparent
 * listener first, then its rules (a redirect must never point at a port nobody listens on); a
 * device backend (tun) gets its device and routes, then the packet engine on it.
 */
import type { Cidr } from '../config/cidr'
import { errorMessage, type TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import { firewallFor } from '../platform/firewall/choose-method'
import type { CaptureSpec, MethodName } from '../platform/firewall/types'
import { cgroupName } from '../platform/os/cgroup'
import { fdHeadroom } from '../platform/os/fd-limit'
import { getOriginalDst } from '../platform/os/original-dst'
import { pfOriginalDst } from '../platform/os/pf-original-dst'
import type { ConnTracker } from '../router/conn-tracker'
import type { LearntRoutes } from '../router/learnt-routes'
import type { RouteEntry, RouteTable } from '../router/route-table'
import type { Dialer } from '../router/types'
import type { DnsRuntime } from './dns-setup'
import type { CaptureListener, Helper, RuntimeFactories } from './factories'
import type { TunnelPlan } from './plan'
import type { TunHandle } from './tun-setup'

export interface CaptureDeps {
  readonly instanceId: string
  readonly plan: TunnelPlan
  readonly helper: Helper
  readonly method: MethodName
  /** Everything the routes exclude, and of that what is this machine's own (local, transports). */
  readonly excludes: readonly Cidr[]
  readonly localHosts: readonly Cidr[]
  readonly routeEntries: readonly RouteEntry[]
  readonly routes: RouteTable
  readonly dialer: Dialer
  readonly tracker: ConnTracker
  readonly dns?: DnsRuntime
  /** --route-by-name: the addresses learnt from DNS answers (a device's engine must accept them). */
  readonly learnt?: Pick<LearntRoutes, 'lookup'>
  /** The kernel guards the DNS interceptor's UDP port: answer it once the rules are in. */
  readonly dnsGuarded: boolean
  readonly ipv6: boolean
  readonly log: Logger
  readonly make: RuntimeFactories
  /** Registers an undo step (runs newest first). */
  readonly onStop: (what: string, run: () => Promise<unknown>) => void
  /** The packet engine gave up (or its device vanished): the tunnel must stop. */
  readonly onFatal: (e: TunnelError) => void
}

export async function startCapture(d: CaptureDeps): Promise<{ listener?: CaptureListener; tun?: TunHandle }> {
  const { plan, log } = d
  const fw = firewallFor(d.method)
  if (fw.capture === 'device') {
    const tun = await d.make.tun({
      instanceId: d.instanceId,
      helper: d.helper,
      engine: plan.tunEngine ?? 'builtin',
      include: plan.includes.map((i) => i.cidr),
      exclude: d.excludes,
      localHosts: d.localHosts,
      routeEntries: d.routeEntries,
      dialer: d.dialer,
      tracker: d.tracker,
      dns: d.dns,
      localUpstreams: plan.dns?.domains.length ? plan.dns.localUpstreams : [],
      ...(plan.routeByName && d.learnt && { learnt: { routes: d.learnt, families: learnFamilies(d.ipv6) } }),
      log,
      ...(plan.ownerUid !== undefined && { ownerUid: plan.ownerUid }),
      ...(plan.execOnly && plan.execOnlyMatch && { only: { cgroup: cgroupName(d.instanceId), match: plan.execOnlyMatch } }),
      onStop: d.onStop,
      onFatal: d.onFatal,
    })
    return { tun }
  }
  const helper = d.helper
  const listener = d.make.listener({
    host: plan.gateway ? '0.0.0.0' : plan.listen.host,
    // In PREROUTING the kernel redirects to the incoming interface's address, not loopback.
    // Every address (it may change), and refusing what was not redirected (SO_ORIGINAL_DST);
    // which interfaces and sources are served is decided by the kernel rules.
    ...(plan.gateway ? { host6: '::' } : {}),
    port: plan.listen.port,
    ipv6: d.ipv6,
    routes: d.routes,
    dialer: d.dialer,
    // pf (macOS) has no SO_ORIGINAL_DST: the helper asks /dev/pf for each connection.
    originalDst: fw.originalDst === 'lookup' ? pfOriginalDst(helper) : getOriginalDst,
    connectionBudget: fdHeadroom(),
    log,
    tracker: d.tracker,
  })
  await listener.start()
  d.onStop('stop listener', () => listener.stop())
  const spec: CaptureSpec = {
    instanceId: d.instanceId,
    listenPort: listener.port,
    include: plan.includes.map((i) => i.cidr),
    exclude: [...d.excludes],
    dns: d.dns?.capture,
    ...(plan.gateway ? { gateway: true } : {}),
    ...(plan.gatewayScope?.interfaces && { gatewayInterfaces: plan.gatewayScope.interfaces }),
    ...(plan.gatewayScope?.sources && { gatewaySources: plan.gatewayScope.sources }),
    ...(plan.ownerUid !== undefined && { ownerUid: plan.ownerUid }),
    ...(plan.execOnly && { cgroup: cgroupName(d.instanceId) }),
    // --route-by-name: addresses learnt from DNS answers join the capture later (helper `learn`).
    ...(plan.routeByName && { learn: { families: learnFamilies(d.ipv6) } }),
  }
  await helper.apply(d.method, spec)
  d.onStop('remove firewall rules', () =>
    helper.revert().catch((e: unknown) => {
      // The helper died (killed, crashed) and took the only root access with it: say what
      // may remain and how to remove it; the state journal lets cleanup find it.
      throw new Error(`${errorMessage(e)}; rules of ${fw.objectName(d.instanceId)} may remain: remove them with \`sudo subnet-tunnel cleanup\``)
    }),
  )
  // The DNS guard is in place now: answer UDP. Hold it again before the rules go (this step
  // runs first), so the port is never open without the guard.
  const dns = d.dns
  if (dns && d.dnsGuarded) {
    dns.answerUdp(true)
    d.onStop('hold DNS answers', async () => dns.answerUdp(false))
  }
  return { listener }
}

/** The families learnt addresses may be added in. */
function learnFamilies(ipv6: boolean): Array<4 | 6> {
  return ipv6 ? [4, 6] : [4]
}
