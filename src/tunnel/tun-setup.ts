/**
 * `--method tun` at run time: the helper creates and routes the device for our uid, then we
 * open it (built-in engine) or hand it to an external tun2socks-style program that talks to a
 * private SOCKS5 front-end of ours.
 *
 * DNS with tun: a nameserver can only be captured if packets to it are ROUTED, so captured
 * servers that are addresses of this machine (127.0.0.53, a dnsmasq on 127.0.0.1, our own
 * interfaces) cannot be: the kernel delivers those locally before any rule is consulted. The
 * others get host routes into the device, and the engine answers UDP port 53 there through
 * the DNS service; TCP port 53 to them goes to the DNS interceptor's TCP side (truncated
 * answers are retried over TCP). With systemd-resolved, its upstreams are captured, which is
 * enough: resolved asks them. If nothing routable remains, start-up fails with a hint.
 * Split DNS (--dns-domain): local names go to the original resolvers from our forwarder's
 * port, which the helper's rules route around the device (platform/firewall/tun-exempt.ts).
 *
 * --route-by-name: the helper adds each learnt address as a host route into the device, and
 * the engine's route table asks the learnt routes too, so it carries what the kernel sends it.
 */
import * as net from 'node:net'
import { randomBytes } from 'node:crypto'
import { type Cidr, cidrContains, hostCidr } from '../config/cidr'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { HelperClient } from '../platform/helper/helper-client'
import { TUN_ADDR, TUN_MTU, tunDeviceName } from '../platform/firewall/tun-naming'
import { type PacketDevice, openTunDevice } from '../platform/os/tun-device'
import type { CaptureSpec, CgroupMatch } from '../platform/firewall/types'
import { AccessPolicy } from '../router/access'
import type { ConnTracker } from '../router/conn-tracker'
import { RouteTable, type RouteEntry } from '../router/route-table'
import { LearningRouteTable } from '../router/learning-route-table'
import type { LearntRoutes } from '../router/learnt-routes'
import { Socks5Server } from '../router/socks5-server'
import { DialError } from '../router/dial-error'
import type { Dialer } from '../router/types'
import { formatHostPort } from '../config/host-port'
import { type EngineDns, startBuiltinEngine } from '../tun/builtin-engine'
import { type EngineProgram, startExternalEngine } from '../tun/external-engine'
import type { DnsRuntime } from './dns-setup'
import { type DarwinTunSystem, startDarwinTun } from './tun-setup-darwin'

/** A running TUN path, as status shows it. */
export interface TunHandle {
  readonly device: string
  /** 'builtin', or the external program's file name. */
  readonly engine: string
  readonly engineVersion?: string
  /** External engine: restarts after crashes. */
  restarts(): number
  stop(): Promise<void>
}

/**
 * Splits captured nameservers into those that can be routed into the device and those that
 * are this machine's own (loopback or a local address / host exclude).
 */
export function splitTunDnsServers(servers: readonly string[], local: readonly Cidr[]): { routed: string[]; local: string[] } {
  const isLocal = (s: string): boolean =>
    s.startsWith('127.') || s === '::1' || local.some((c) => c.prefix === (c.family === 4 ? 32 : 128) && cidrContains(c, s))
  return { routed: servers.filter((s) => !isLocal(s)), local: servers.filter(isLocal) }
}

export interface TunSetupDeps {
  readonly instanceId: string
  readonly helper: Pick<HelperClient, 'apply' | 'revert'>
  readonly engine: 'builtin' | EngineProgram
  readonly include: readonly Cidr[]
  /** Everything the route table excludes (user's, the SSH transport, this machine's addresses). */
  readonly exclude: readonly Cidr[]
  /** Excludes that are this machine's own addresses or transports (DNS servers there cannot be routed). */
  readonly localHosts: readonly Cidr[]
  /** The router's entries; the built-in engine gets them plus the captured nameservers. */
  readonly routeEntries: readonly RouteEntry[]
  readonly dialer: Dialer
  readonly tracker: ConnTracker
  readonly dns?: DnsRuntime
  /** Nameservers split DNS sends local names to (our queries to them are routed around the device). */
  readonly localUpstreams?: readonly string[]
  /** --route-by-name: the addresses learnt from DNS answers, and the families they may be in. */
  readonly learnt?: { readonly routes: Pick<LearntRoutes, 'lookup'>; readonly families: Array<4 | 6> }
  readonly log: Logger
  /** --owner-only: only this uid's connections are routed into the device. */
  readonly ownerUid?: number
  /** exec --only: only this cgroup's connections are routed into the device, marked by `match`. */
  readonly only?: { readonly cgroup: string; readonly match: CgroupMatch }
  /** Registers an undo step (runs newest first). */
  readonly onStop: (what: string, run: () => Promise<unknown>) => void
  /** Called if an external engine is given up (the tunnel should stop). */
  readonly onFatal?: (err: TunnelError) => void
  /** process.platform (tests). */
  readonly platform?: NodeJS.Platform
  /** macOS system access (tests). */
  readonly darwin?: DarwinTunSystem
}

/** The captured nameservers routed into the device (throws when none can be). */
export function dnsServersToRoute(d: Pick<TunSetupDeps, 'dns' | 'localHosts' | 'localUpstreams' | 'log' | 'platform'>): string[] {
  if (!d.dns) return []
  const { routed, local } = splitTunDnsServers(d.dns.capture.servers, d.localHosts)
  if (routed.length === 0) {
    throw new TunnelError('DNS_CONFIG', `--dns with --method tun: the nameserver(s) ${local.join(', ')} are addresses of this machine, which cannot be routed into a TUN device`, {
      hint: 'point /etc/resolv.conf (or --ns-hosts) at a resolver that is not on this machine, or use --method nft / nat, which redirect local resolvers too',
    })
  }
  if (local.length > 0) d.log.verbose('dns', `tun: not capturing ${local.join(', ')} (local addresses cannot be routed); capturing ${routed.join(', ')}`)
  // Split DNS: local names go to the original resolvers from our forwarder's port. On Linux the
  // helper's rules route that port around the device (platform/firewall/tun-exempt.ts); macOS
  // has no such rules, so our own query would come back into the device.
  const loop = routed.filter((s) => d.localUpstreams?.includes(s))
  if (loop.length > 0 && (d.platform ?? process.platform) === 'darwin') {
    throw new TunnelError('USAGE', `--dns-domain with --method tun on macOS: local names go to ${loop.join(', ')}, which would be routed back into the tunnel`, {
      hint: 'leave out --dns-domain, or use --method pf',
    })
  }
  if (loop.length > 0) d.log.verbose('dns', `tun: queries for local names go to ${loop.join(', ')} from port(s) ${d.dns.capture.exemptSourcePorts.join(', ')}, routed around the device`)
  return routed
}

/** The spec the helper applies: the device, its routes, the captured nameservers, learning. */
export function tunCaptureSpec(d: Pick<TunSetupDeps, 'instanceId' | 'include' | 'exclude' | 'dns' | 'ownerUid' | 'learnt' | 'only'>, dnsServers: readonly string[]): CaptureSpec {
  return {
    instanceId: d.instanceId,
    listenPort: 0,
    include: [...d.include],
    exclude: [...d.exclude],
    // The forwarder's port is exempt from the routes (split DNS; tun-exempt.ts).
    ...(d.dns && dnsServers.length > 0 && { dns: { servers: [...dnsServers], port: d.dns.capture.port, exemptSourcePorts: [...d.dns.capture.exemptSourcePorts] } }),
    tunOwner: process.getuid?.() ?? 0,
    ...(d.ownerUid !== undefined && { ownerUid: d.ownerUid }),
    // --route-by-name: learnt addresses become host routes into the device (helper `learn`).
    ...(d.learnt && { learn: { families: [...d.learnt.families] } }),
    // exec --only: the command's cgroup is marked, the mark routes into the device (tun-only.ts).
    ...(d.only && { cgroup: d.only.cgroup, cgroupMatch: d.only.match }),
  }
}

/**
 * The built-in engine's route tables: what it carries (the tunnelled networks, the captured
 * nameservers, and with --route-by-name the addresses learnt so far — the kernel routes those
 * into the device, so the engine must accept them too, until they expire), and the tunnelled
 * part alone (which ports of a nameserver the DNS interceptor takes).
 */
export function engineRoutes(d: Pick<TunSetupDeps, 'routeEntries' | 'learnt'>, dnsServers: readonly string[]): { tunnelled: RouteTable; routes: RouteTable } {
  const table = (entries: RouteEntry[]): RouteTable => (d.learnt ? new LearningRouteTable(entries, d.learnt.routes) : new RouteTable(entries))
  const tunnelled = table([...d.routeEntries])
  // A captured nameserver inside a subnet routed through another bastion keeps that bastion.
  const routes = table([...d.routeEntries, ...dnsServers.map((s) => ({ cidr: hostCidr(s), action: 'tunnel' as const, via: tunnelled.lookup(s)?.via }))])
  return { tunnelled, routes }
}

/** The device's own addresses: the source of every packet this machine routes into it. */
const DEVICE_SOURCES = new Set(Object.values(TUN_ADDR).map((a) => a.split('/')[0]))

/**
 * The engine's DNS answers, minus our own forwarder's queries: those are routed around the
 * device (tun-exempt.ts), and one that still arrives here — the exemption gone, say — would be
 * forwarded again, and again. Dropped, it times out like an unanswered query.
 */
export function engineDnsAnswer(service: Pick<DnsRuntime['service'], 'handle'>, exemptPorts: readonly number[], log: Logger): EngineDns {
  const own = new Set(exemptPorts)
  return {
    answer(q, c) {
      if (own.has(c.port) && DEVICE_SOURCES.has(c.host)) {
        log.verbose('dns', `tun: dropped a query from our own forwarder (port ${c.port}) that came back into the device`)
        return Promise.resolve(undefined)
      }
      return service.handle(q, 'udp', { address: c.host, port: c.port })
    },
  }
}

/** A dialer that sends TCP port 53 for captured nameservers to the DNS interceptor's TCP side. */
export function dnsTcpDialer(inner: Dialer, servers: ReadonlySet<string>, dnsPort: number, tunnelled: RouteTable): Dialer {
  return {
    dial(dst, meta) {
      // Like nat/nft's DNS capture: port 53 of a captured server is ours even when the server
      // lies inside a tunnelled network; its other ports are routed as usual.
      if (!servers.has(dst.host) || (dst.port !== 53 && tunnelled.decide(dst.host) === 'tunnel')) return inner.dial(dst, meta)
      if (dst.port !== 53) return Promise.reject(new DialError('not-routed', `${formatHostPort(dst.host, dst.port)}: not tunnelled`))
      return new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: dnsPort }, () => resolve(s))
        s.once('error', (e) => reject(DialError.fromSocketError(e, 'DNS interceptor')))
      })
    },
  }
}

/** Applies the tun plan, then starts the engine on the device. Undo steps go to deps.onStop. */
export async function startTun(d: TunSetupDeps): Promise<TunHandle> {
  const device = tunDeviceName(d.instanceId)
  const dnsServers = dnsServersToRoute(d)
  const spec = tunCaptureSpec(d, dnsServers)
  const darwin = (d.platform ?? process.platform) === 'darwin'
  if (darwin && d.engine !== 'builtin') {
    throw new TunnelError('USAGE', '--tun-engine on macOS: external engines are not supported there yet', { hint: 'leave out --tun-engine (the built-in engine)' })
  }
  const helper = d.helper
  if (!darwin) {
    await helper.apply('tun', spec)
    d.onStop('remove the TUN device and its routes', () =>
      helper.revert().catch((e: unknown) => {
        throw new Error(`${errorMessage(e)}; device ${device} and its routes may remain: remove them with \`sudo subnet-tunnel cleanup\``)
      }),
    )
  }
  if (d.engine === 'builtin') {
    let dev: PacketDevice
    if (darwin) {
      dev = await startDarwinTun(spec, { log: d.log, onStop: d.onStop, ...(d.darwin && { system: d.darwin }) })
    } else {
      const linux = await openTunDevice(device)
      linux.onError((e) => d.onFatal?.(e instanceof TunnelError ? e : new TunnelError('FW_APPLY', errorMessage(e))))
      dev = linux
    }
    const { tunnelled, routes } = engineRoutes(d, dnsServers)
    const dns = d.dns
    const engine = startBuiltinEngine({
      device: dev,
      dialer: dns ? dnsTcpDialer(d.dialer, new Set(dnsServers.map((s) => hostCidr(s).address)), dns.capture.port, tunnelled) : d.dialer,
      routes,
      ...(dns && { dns: engineDnsAnswer(dns.service, dns.capture.exemptSourcePorts, d.log) }),
      tracker: d.tracker,
      log: d.log,
    })
    d.onStop('stop the TUN engine', () => engine.stop())
    return { device: dev.name, engine: 'builtin', restarts: () => 0, stop: () => engine.stop() }
  }
  // External engine: it opens the device itself (a second TUNSETIFF on a single-queue device
  // would be refused with EBUSY, so we never open it here).
  const username = randomBytes(8).toString('hex')
  const password = randomBytes(16).toString('hex')
  const socks = new Socks5Server({ host: '127.0.0.1', port: 0, dialer: d.dialer, access: new AccessPolicy(), tracker: d.tracker, log: d.log, auth: { username, password } })
  const port = await socks.start()
  d.onStop('stop the engine SOCKS5 front-end', () => socks.stop())
  const ext = await startExternalEngine({
    program: d.engine,
    device,
    mtu: TUN_MTU,
    socks: { host: '127.0.0.1', port, username, password },
    log: d.log,
    onFatal: d.onFatal,
  })
  d.onStop(`stop ${ext.program.path}`, () => ext.stop())
  d.log.verbose('route', `tun: ${ext.program.kind} ${ext.version ?? '(version unknown)'} on ${device} → socks5 127.0.0.1:${port}`)
  return {
    device,
    engine: ext.program.path.split('/').pop() ?? ext.program.kind,
    ...(ext.version !== undefined && { engineVersion: ext.version }),
    restarts: () => ext.restarts(),
    stop: () => ext.stop(),
  }
}

