/**
 * The built-in TUN engine: packets from the TUN device go through our userspace TCP/IP stack
 * (src/netstack), and every TCP connection it terminates is routed and dialled exactly like a
 * connection the transparent listener accepted — same route table, same Dialer, same
 * ConnTracker, same failure answers (a refused channel is an RST, an unreachable target an
 * ICMP unreachable). DNS over UDP goes to the DNS module.
 */
import type { Duplex } from 'node:stream'
import { errorMessage } from '../errors'
import { limitRepeats } from '../observe/log-limiter'
import type { Logger } from '../observe/logger'
import { NetStack, type Endpoint, type StackOptions, type StackStats } from '../netstack/stack'
import type { ConnTracker, TrackedConn } from '../router/conn-tracker'
import type { RouteTable } from '../router/route-table'
import type { ConnMeta, Dialer } from '../router/types'
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

/** Starts carrying the device's traffic; stop() resets every connection and closes the device. */
export function startBuiltinEngine(o: BuiltinEngineOptions): BuiltinEngine {
  const { device, dialer, routes, tracker } = o
  // A scan of an excluded range through the device must not flood the log (one line per SYN).
  const log = limitRepeats(o.log)
  const tracked = new WeakMap<Duplex, TrackedConn>()
  let unrouted = 0

  const openTcp = async (src: Endpoint, dst: Endpoint): Promise<Duplex> => {
    // Routes send only the tunnelled subnets to the device, so this is a stale route, an
    // exclude inside an include that the kernel did not honour, or someone else's route.
    if (routes.decide(dst.host) !== 'tunnel') {
      unrouted++
      log.warn('route', `tun: ${fmt(dst)} is not in the tunnelled subnets, resetting`)
      throw Object.assign(new Error(`${fmt(dst)}: not tunnelled`), { reason: 'refused' })
    }
    const meta: ConnMeta = { id: tracker.nextId(), frontEnd: 'transparent', srcAddress: src.host, srcPort: src.port }
    const conn = tracker.open(meta, { host: dst.host, port: dst.port })
    const verbose = log.enabled('verbose')
    let remote: Duplex
    try {
      remote = await dialer.dial({ host: dst.host, port: dst.port }, meta)
    } catch (err) {
      // The error keeps its reason (ChannelOpenError): the stack turns it into RST or ICMP.
      tracker.close(conn, errorMessage(err))
      log.warn('route', `#${meta.id} → ${fmt(dst)}: ${errorMessage(err)}`)
      throw err
    }
    if (verbose) log.verbose('route', `#${meta.id} ${fmt(src)} → ${fmt(dst)} open (tun)`)
    tracked.set(remote, conn)
    let failure: string | undefined
    remote.on('error', (e: Error) => (failure ??= e.message))
    remote.once('close', () => {
      tracker.close(conn, failure)
      if (verbose) {
        log.verbose('route', `#${meta.id} → ${fmt(dst)} closed (${conn.bytesUp} B up, ${conn.bytesDown} B down)${failure ? `: ${failure}` : ''}`)
      }
    })
    return remote
  }

  const udp = async (src: Endpoint, dst: Endpoint, payload: Buffer): Promise<Buffer | undefined> => {
    if (dst.port !== 53 || !o.dns) throw { reason: 'unsupported' }
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

function fmt(e: { host: string; port: number }): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`
}
