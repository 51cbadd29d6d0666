import { formatBind } from '../config/bind-address'
import { type ForwardSpec, formatForward } from '../config/forward-spec'
import { formatHostPort } from '../config/host-port'
import type { Logger } from '../observe/logger'
import { isLoopbackBind } from '../router/access'
import type { ConnTracker } from '../router/conn-tracker'
import type { DescriptorReserve } from '../router/descriptor-reserve'
import { HandshakeGuard } from '../router/handshake-guard'
import { HttpProxy } from '../router/http-proxy'
import { LocalForward } from '../router/local-forward'
import { Socks5Server } from '../router/socks5-server'
import type { Dialer, RemoteListenHost } from '../router/types'
import { RemoteForward } from '../router/remote-forward'
import type { TunnelPlan } from './plan'

/** A started proxy or forward, as the CLI shows and stops it. */
export interface FrontEndHandle {
  readonly kind: 'socks5' | 'http' | 'local' | 'remote'
  /** Where it listens ("127.0.0.1:1080", or the server side for -R). */
  readonly address: string
  /** The forward spec as given, for -L / -R. */
  readonly spec?: string
  /** -L / -R: where connections go (`host:port`; -R: on this side). */
  readonly target?: string
  describe(): string
  stop(): Promise<void>
}

/** What the front-ends need from the running tunnel. */
export interface FrontEndDeps {
  readonly dialer: Dialer
  /** Each bastion's SSH connection (-R asks the default one to listen). */
  readonly sessions: ReadonlyMap<string, RemoteListenHost>
  readonly tracker: ConnTracker
  readonly log: Logger
  /** Descriptors kept for the transparent listener and connected clients. */
  readonly reserve?: DescriptorReserve
}

/**
 * Starts the proxies (-D, --http-proxy) and forwards (-L, -R). A listener bound off loopback
 * gets a warning, and only loopback and --allow networks may use it. If one fails to start,
 * those already started are stopped before the error propagates.
 */
export async function startFrontEnds(plan: TunnelPlan, deps: FrontEndDeps): Promise<FrontEndHandle[]> {
  const { dialer, tracker, log } = deps
  const { access, proxyAuth } = plan
  const started: FrontEndHandle[] = []
  // One guard for every proxy: its caps bound clients in their handshake across all of them.
  const guard = new HandshakeGuard({ log, reserve: deps.reserve })
  const warnExposed = (what: string, host: string): void => {
    if (!isLoopbackBind(host)) {
      log.warn('route', `${what} listens on ${host}, reachable from other hosts; allowed clients: ${access.describe()}`)
    }
  }
  try {
    for (const b of plan.socks) {
      warnExposed(`SOCKS5 proxy ${formatBind(b)}`, b.host)
      const s = new Socks5Server({ host: b.host, port: b.port, dialer, access, tracker, log, auth: proxyAuth, guard })
      const port = await s.start()
      const address = formatBind({ host: b.host, port })
      started.push({ kind: 'socks5', address, describe: () => `socks5 ${address}`, stop: () => s.stop() })
    }
    for (const b of plan.http) {
      warnExposed(`HTTP proxy ${formatBind(b)}`, b.host)
      const p = new HttpProxy({ host: b.host, port: b.port, dialer, access, tracker, log, auth: proxyAuth, guard })
      const port = await p.start()
      const address = formatBind({ host: b.host, port })
      started.push({ kind: 'http', address, describe: () => `http proxy ${address}`, stop: () => p.stop() })
    }
    for (const { text, spec } of plan.localForwards) {
      const f = new LocalForward({ spec, dialer, access, tracker, log, reserve: deps.reserve })
      await f.start()
      const shown = formatForward({ ...spec, bindPort: f.port })
      if (spec.bindHost !== 'localhost' && !isLoopbackBind(spec.bindHost)) warnExposed(shown, spec.bindHost)
      started.push({ kind: 'local', ...forwardAddresses(spec, f.port), spec: text, describe: () => shown, stop: () => f.stop() })
    }
    // -R asks the default bastion (-r) to listen; its session always exists (planTunnel).
    const defaultSession = deps.sessions.get(plan.defaultRemote)!
    for (const { text, spec } of plan.remoteForwards) {
      const f = new RemoteForward({ spec, host: defaultSession, tracker, log, access })
      const port = await f.start()
      const shown = formatForward({ ...spec, bindPort: port })
      started.push({ kind: 'remote', ...forwardAddresses(spec, port), spec: text, describe: () => shown, stop: () => f.stop() })
    }
  } catch (e) {
    for (const f of started.reverse()) await f.stop().catch(() => {})
    throw e
  }
  return started
}

/** Where a forward listens (the port actually bound) and where it connects, as host:port. */
function forwardAddresses(spec: ForwardSpec, port: number): { address: string; target: string } {
  return { address: formatHostPort(spec.bindHost === '*' ? '0.0.0.0' : spec.bindHost, port), target: formatHostPort(spec.host, spec.hostPort) }
}
