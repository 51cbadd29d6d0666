/**
 * The built-in TUN engine: packets from the TUN device go through our userspace TCP/IP stack
 * (src/netstack), and every TCP connection it terminates is routed and dialled exactly like a
 * connection the transparent listener accepted — same route table, same Dialer, same
 * ConnTracker, same failure answers (a refused channel is an RST, an unreachable target an
 * ICMP unreachable). DNS over UDP goes to the DNS module.
 */
import type { Duplex } from 'node:stream'
import { formatHostPort } from '../config/host-port'
import { errorMessage } from '../errors'
import { limitRepeats } from '../observe/log-limiter'
import type { Logger } from '../observe/logger'
import { FlowRefused } from '../netstack/refusal'
import { NetStack, type Endpoint, type StackOptions, type StackStats } from '../netstack/stack'
import type { ConnTracker, TrackedConn } from '../router/conn-tracker'
import { DialError } from '../router/dial-error'
import { type Opened, type RelayContext, finishConnection, lineOf, openConnection } from '../router/relay'
import type { RouteTable } from '../router/route-table'
import type { Dialer } from '../router/types'
import type { PacketDevice } from '../platform/os/tun-device'

export type { PacketDevice } from '../platform/os/tun-device'

/** Answers DNS queries (the DnsService, adapted: `handle(query, 'udp', client)`). */
export interface EngineDns {
  answer(query: Buffer, client: Endpoint): Promise<Buffer | undefined>
}

export interface BuiltinEngineOptions {
  readonly device: PacketDevice
  readonly dialer: Dialer
  readonly routes: RouteTable
  readonly dns?: EngineDns
  readonly tracker: ConnTracker
  readonly log: Logger
  /** For tests: clock and TCP tunables, passed to the stack. */
  readonly stack?: Pick<StackOptions, 'timers' | 'tcp'>
}

export interface BuiltinEngineStats extends StackStats {
  /** Connections refused before dialling: their destination is not a tunnelled subnet. */
  unrouted: number
}

export interface BuiltinEngine {
  stop(): Promise<void>
  stats(): BuiltinEngineStats
}

/**
 * The answer the stack gives an application for a failed dial: an unreachable target (or no
 * answer in time) is an ICMP host unreachable, as a router would send; everything else
 * (refused, prohibited, not routed, the tunnel down) an RST, so the application fails at once.
 */
export function refusalFor(e: unknown): FlowRefused {
  const host = e instanceof DialError && (e.reason === 'unreachable' || e.reason === 'network-unreachable' || e.reason === 'timeout')
  return new FlowRefused(host ? 'host-unreachable' : 'reset', errorMessage(e))
}

/** Starts carrying the device's traffic; stop() resets every connection and closes the device. */
export function startBuiltinEngine(o: BuiltinEngineOptions): BuiltinEngine {
  const { device, tracker } = o
  // A scan of an excluded range through the device must not flood the log (one line per SYN).
  const log = limitRepeats(o.log)
  const ctx: RelayContext = { dialer: o.dialer, tracker, log, routes: o.routes }
  const tracked = new WeakMap<Duplex, TrackedConn>()
  let unrouted = 0

  const openTcp = async (src: Endpoint, dst: Endpoint): Promise<Duplex> => {
    let opened: Opened
    try {
      opened = await openConnection({ frontEnd: 'transparent', label: 'tun', src: { address: src.host, port: src.port }, dst: { host: dst.host, port: dst.port }, routedOnly: true }, ctx)
    } catch (e) {
      // Routes send only the tunnelled subnets to the device, so this is a stale route, an
      // exclude inside an include that the kernel did not honour, or someone else's route.
      if (e instanceof DialError && e.reason === 'not-routed') {
        unrouted++
        log.warn('route', `tun: ${formatHostPort(dst.host, dst.port)} is not in the tunnelled subnets, resetting`)
      }
      throw refusalFor(e)
    }
    const { remote, conn } = opened
    if (log.enabled('verbose')) log.verbose('route', `${lineOf(opened)} open`)
    tracked.set(remote, conn)
    let failure: string | undefined
    remote.on('error', (e: Error) => (failure ??= e.message))
    remote.once('close', () => finishConnection(opened, ctx, failure))
    return remote
  }

  const udp = async (src: Endpoint, dst: Endpoint, payload: Buffer): Promise<Buffer | undefined> => {
    if (dst.port !== 53 || !o.dns) throw new FlowRefused('port-unreachable')
    return o.dns.answer(payload, src)
  }

  const stack = new NetStack({
    send: (p) => device.write(p),
    openTcp,
    udp,
    mtu: device.mtu,
    log: o.log,
    counters: (d) => tracked.get(d),
    ...o.stack,
  })
  device.onPacket((p) => stack.input(p))

  return {
    async stop() {
      stack.close()
      await device.close()
    },
    stats: () => ({ ...stack.stats(), unrouted }),
  }
}
