/**
 * Reconnect on network change: one NetWatcher per bastion address (src/platform/os/net-watch.ts)
 * tells every SSH connection to that bastion to redial at once (SshConnection.reconnectNow)
 * when the route to it changed or broke, or when the machine resumed from suspend, instead of
 * waiting for keepalive to notice a dead path (15 s × 3 by default).
 *
 * The bastion's address is what its name resolves to now (the first hop with ProxyJump); a
 * ProxyCommand hides where the transport goes, so such a remote is watched for resume only.
 * After a reconnect the name is resolved again: a new network can answer with another address.
 */
import { EventEmitter } from 'node:events'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { ClockJumpDetector } from '../platform/os/clock-jump'
import { NetWatcher, type PathChange, type ResumeInfo } from '../platform/os/net-watch'
import type { SshConnection } from '../ssh/engine'

/** What the reconnect logic needs of a watcher (NetWatcher; a fake in tests). */
export interface WatcherLike {
  on(ev: 'changed', fn: (c: PathChange) => void): unknown
  on(ev: 'resume', fn: (r: ResumeInfo) => void): unknown
  start(): Promise<void>
  stop(): Promise<void>
  setBastion(address: string): Promise<void>
}

export interface WatchOptions {
  /** An IP literal, or undefined: the address is unknown (ProxyCommand), watch for resume only. */
  readonly bastion: string | undefined
  readonly ignoreDevs: readonly string[]
  readonly ignoreTables: readonly string[]
}

export interface WatchedRemote {
  readonly name: string
  /** The host our transport connects to (first hop or target); undefined with a ProxyCommand. */
  readonly transportHost: string | undefined
  /** Every connection of the remote's pool, now (the pool grows). */
  readonly connections: () => readonly SshConnection[]
}

export interface NetReconnectDeps {
  readonly remotes: readonly WatchedRemote[]
  readonly watcher: (o: WatchOptions) => WatcherLike
  /** The first address a host name resolves to (what the transport dials), undefined if none. */
  readonly resolve: (host: string) => Promise<string | undefined>
  /** Our own device and routing table (--method tun): their changes never matter. */
  readonly ignoreDevs?: readonly string[]
  readonly ignoreTables?: readonly string[]
  readonly log: Logger
}

export interface NetReconnect {
  stop(): Promise<void>
}

/** Starts watching; never throws (a watcher that cannot start leaves keepalive in charge). */
export async function startNetReconnect(d: NetReconnectDeps): Promise<NetReconnect> {
  // One watcher per transport address: two remotes behind the same bastion share it.
  const groups = new Map<string, { bastion: string | undefined; remotes: WatchedRemote[] }>()
  for (const r of d.remotes) {
    let bastion: string | undefined
    if (r.transportHost !== undefined) {
      bastion = await d.resolve(r.transportHost).catch((e: unknown) => {
        d.log.verbose('route', `net watch: cannot resolve ${r.transportHost}: ${errorMessage(e)}`)
        return undefined
      })
    }
    const key = bastion ?? `resume-only:${r.name}`
    const g = groups.get(key) ?? { bastion, remotes: [] }
    g.remotes.push(r)
    groups.set(key, g)
  }
  const watchers: WatcherLike[] = []
  for (const g of groups.values()) {
    const w = d.watcher({ bastion: g.bastion, ignoreDevs: d.ignoreDevs ?? [], ignoreTables: d.ignoreTables ?? [] })
    const redial = (why: string): void => {
      for (const r of g.remotes) {
        const conns = r.connections()
        d.log.info('ssh', `${r.name}: ${why}: reconnecting ${conns.length === 1 ? 'now' : `all ${conns.length} connections now`}`)
        for (const c of conns) c.reconnectNow(why)
      }
    }
    // Each time the first connection is up again, follow the address the name now resolves to.
    if (g.bastion !== undefined) for (const r of g.remotes) followAddress(r, g.bastion, w, d)
    w.on('changed', (c) => redial(c.after?.up ? 'the route to the SSH server changed' : 'the route to the SSH server broke'))
    w.on('resume', (r) => redial(`resumed after ~${Math.round(r.sleptMs / 1000)} s of suspend`))
    try {
      await w.start()
      watchers.push(w)
    } catch (e) {
      d.log.warn('route', `not watching for network changes: ${errorMessage(e)} (keepalive alone notices a dead path)`)
      await w.stop().catch(() => {})
    }
  }
  return {
    async stop() {
      await Promise.all(watchers.map((w) => w.stop().catch(() => {})))
    },
  }
}

/** Whenever r's first connection comes up, re-resolve its host and re-point the watcher if it moved. */
function followAddress(r: WatchedRemote, watched: string, w: WatcherLike, d: NetReconnectDeps): void {
  const first = r.connections()[0]
  if (!first || r.transportHost === undefined) return
  let last = watched
  first.on('up', () => {
    void d
      .resolve(r.transportHost!)
      .then(async (a) => {
        if (!a || a === last) return
        last = a
        await w.setBastion(a)
      })
      .catch(() => {})
  })
}

/** The real watcher: routes and suspend when the address is known, suspend alone otherwise. */
export function realWatcher(o: WatchOptions, log: Logger): WatcherLike {
  if (o.bastion !== undefined) return new NetWatcher({ bastion: o.bastion, ignoreDevs: o.ignoreDevs, ignoreTables: o.ignoreTables, log })
  return new ResumeWatcher(log)
}

/** A ProxyCommand hides the transport's address: only a resume after suspend can be seen. */
class ResumeWatcher extends EventEmitter implements WatcherLike {
  private readonly clock: ClockJumpDetector
  constructor(log: Logger) {
    super()
    this.clock = new ClockJumpDetector({
      onJump: (sleptMs) => {
        log.info('route', `resumed after ~${Math.round(sleptMs / 1000)} s of suspend`)
        this.emit('resume', { sleptMs })
      },
    })
  }
  async start(): Promise<void> {
    this.clock.start()
  }
  async stop(): Promise<void> {
    this.clock.stop()
  }
  async setBastion(): Promise<void> {}
}
