/** Reconnect on network change: which connections a watcher's events redial, and what it watches. */
import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import type { PathChange } from '../../src/platform/os/net-watch'
import type { SshConnection } from '../../src/ssh/engine'
import { startNetReconnect, type WatcherLike, type WatchOptions } from '../../src/tunnel/net-reconnect'

class FakeWatcher extends EventEmitter implements WatcherLike {
  started = false
  stopped = false
  bastions: string[] = []
  constructor(readonly o: WatchOptions, private readonly fail = false) {
    super()
  }
  async start(): Promise<void> {
    if (this.fail) throw new Error('no ip binary')
    this.started = true
  }
  async stop(): Promise<void> {
    this.stopped = true
  }
  async setBastion(a: string): Promise<void> {
    this.bastions.push(a)
  }
}

function conn(): SshConnection & { redials: string[] } {
  const c = new EventEmitter() as SshConnection & { redials: string[] }
  c.redials = []
  Object.assign(c, { reconnectNow: (why: string) => c.redials.push(why) })
  return c
}

const change = (up: boolean): PathChange => ({
  before: { dev: 'eth0', up: true },
  after: up ? { dev: 'wlan0', up: true } : undefined,
  reasons: ['test'],
  broken: !up,
  firstEventAt: 0,
})

describe('startNetReconnect', () => {
  it('one watcher per bastion address; a route change or a resume redials every connection of its pools, and only those', async () => {
    const watchers: FakeWatcher[] = []
    const a1 = conn(), a2 = conn(), b1 = conn(), c1 = conn()
    const pools: Record<string, SshConnection[]> = { a: [a1, a2], b: [b1], c: [c1] }
    const addr: Record<string, string> = { 'bastion-a': '192.0.2.1', 'alias-a': '192.0.2.1', 'bastion-c': '198.51.100.7' }
    const nr = await startNetReconnect({
      remotes: [
        { name: 'a', transportHost: 'bastion-a', connections: () => pools.a! },
        { name: 'b', transportHost: 'alias-a', connections: () => pools.b! },
        { name: 'c', transportHost: 'bastion-c', connections: () => pools.c! },
      ],
      watcher: (o) => {
        const w = new FakeWatcher(o)
        watchers.push(w)
        return w
      },
      resolve: async (h) => addr[h],
      ignoreDevs: ['st1234'],
      ignoreTables: ['1392508928'],
      log: memoryLogger(),
    })
    expect(watchers.map((w) => w.o)).toEqual([
      { bastion: '192.0.2.1', ignoreDevs: ['st1234'], ignoreTables: ['1392508928'] },
      { bastion: '198.51.100.7', ignoreDevs: ['st1234'], ignoreTables: ['1392508928'] },
    ])
    expect(watchers.every((w) => w.started)).toBe(true)
    watchers[0]!.emit('changed', change(true))
    expect([a1.redials, a2.redials, b1.redials]).toEqual([['the route to the SSH server changed'], ['the route to the SSH server changed'], ['the route to the SSH server changed']])
    expect(c1.redials).toEqual([])
    watchers[1]!.emit('changed', change(false))
    expect(c1.redials).toEqual(['the route to the SSH server broke'])
    watchers[1]!.emit('resume', { sleptMs: 120_000 })
    expect(c1.redials[1]).toBe('resumed after ~120 s of suspend')
    await nr.stop()
    expect(watchers.every((w) => w.stopped)).toBe(true)
  })

  it('follows the bastion to a new address when its connection comes back up', async () => {
    let address = '192.0.2.1'
    const c = conn()
    let w: FakeWatcher | undefined
    await startNetReconnect({
      remotes: [{ name: 'a', transportHost: 'bastion', connections: () => [c] }],
      watcher: (o) => (w = new FakeWatcher(o)),
      resolve: async () => address,
      log: memoryLogger(),
    })
    c.emit('up')
    await new Promise((r) => setImmediate(r))
    expect(w!.bastions).toEqual([]) // same address: nothing to do
    address = '203.0.113.9'
    c.emit('up')
    await new Promise((r) => setImmediate(r))
    expect(w!.bastions).toEqual(['203.0.113.9'])
  })

  it('a ProxyCommand remote (or a name that does not resolve) is watched for resume only; a watcher that cannot start is a warning', async () => {
    const log = memoryLogger()
    const seen: WatchOptions[] = []
    const nr = await startNetReconnect({
      remotes: [
        { name: 'pc', transportHost: undefined, connections: () => [] },
        { name: 'x', transportHost: 'nowhere', connections: () => [] },
      ],
      watcher: (o) => {
        seen.push(o)
        return new FakeWatcher(o, true)
      },
      resolve: async () => {
        throw new Error('ENOTFOUND')
      },
      log,
    })
    expect(seen.map((o) => o.bastion)).toEqual([undefined, undefined])
    expect(log.lines.join('\n')).toMatch(/not watching for network changes: no ip binary/)
    await nr.stop()
  })
})
