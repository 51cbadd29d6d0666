/**
 * The -R front-end over a fake transport (the real one: test/ssh/builtin/remote-listener.test.ts, against
 * sshd): local connect first, then accept; a refused target is rejected; the access check runs
 * only when the transport knows the client's address.
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { parseForward } from '../../src/config/forward-spec'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import { RemoteForward } from '../../src/router/remote-forward'
import type { IncomingConnection, RemoteListener, RemoteListenHost, RemoteListenSpec } from '../../src/router/types'

class FakeRemote extends EventEmitter implements RemoteListener, RemoteListenHost {
  port = 0
  spec: RemoteListenSpec | undefined
  onConnection: ((c: IncomingConnection) => void) | undefined
  stopped = false
  listenRemote(spec: RemoteListenSpec, onConnection: (c: IncomingConnection) => void): RemoteListener {
    this.spec = spec
    this.onConnection = onConnection
    return this
  }
  async start(): Promise<number> {
    this.port = 2222
    return this.port
  }
  async stop(): Promise<void> {
    this.stopped = true
  }
  /** One forwarded connection; resolves with what the front-end did with it. */
  connect(src: { srcAddress?: string; srcPort?: number }): Promise<{ accepted?: PassThrough; rejected?: true }> {
    return new Promise((resolve) => {
      const ch = new PassThrough()
      this.onConnection!({ ...src, accept: () => (resolve({ accepted: ch }), ch), reject: () => resolve({ rejected: true }) })
    })
  }
}

const servers: net.Server[] = []
afterEach(() => {
  for (const s of servers.splice(0)) s.close()
})

async function target(): Promise<number> {
  const srv = net.createServer((s) => {
    s.on('error', () => {}) // the front-end resets it when the channel goes away
    s.end('hi')
  })
  servers.push(srv)
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return (srv.address() as net.AddressInfo).port
}

describe('RemoteForward (router front-end of -R)', () => {
  it('asks the transport with the spec, connects locally, then accepts and pipes', async () => {
    const remote = new FakeRemote()
    const port = await target()
    const f = new RemoteForward({ spec: parseForward('remote', `0:127.0.0.1:${port}`), host: remote, log: memoryLogger() })
    expect(await f.start()).toBe(2222)
    expect(remote.spec).toEqual({ bindHost: 'localhost', bindPort: 0, name: `-R 0:127.0.0.1:${port}` })
    const got = await remote.connect({ srcAddress: '127.0.0.1', srcPort: 5000 })
    const data = await new Promise<string>((r) => {
      let t = ''
      got.accepted!.on('data', (d) => (t += d))
      got.accepted!.on('end', () => r(t))
    })
    expect(data).toBe('hi')
    await f.stop()
    expect(remote.stopped).toBe(true)
  })

  it('rejects the channel when the local target refuses, and logs it', async () => {
    const remote = new FakeRemote()
    const closed = await target()
    servers.pop()!.close()
    const log = memoryLogger()
    const f = new RemoteForward({ spec: parseForward('remote', `0:127.0.0.1:${closed}`), host: remote, log })
    await f.start()
    expect(await remote.connect({ srcAddress: '127.0.0.1', srcPort: 5000 })).toEqual({ rejected: true })
    expect(f.tracker.totals).toMatchObject({ total: 1, failed: 1 })
    expect(log.lines.join('\n')).toMatch(/warning: #1 forward 127\.0\.0\.1:5000 → 127\.0\.0\.1:\d+: .*ECONNREFUSED/)
  })

  it('checks --allow only when the transport reports the client address', async () => {
    const remote = new FakeRemote()
    const port = await target()
    const access = new AccessPolicy(['10.0.0.0/8'])
    const f = new RemoteForward({ spec: parseForward('remote', `0:127.0.0.1:${port}`), host: remote, log: memoryLogger(), access })
    await f.start()
    expect(await remote.connect({ srcAddress: '192.0.2.7', srcPort: 1 })).toEqual({ rejected: true })
    expect(f.tracker.totals.total).toBe(0)
    const unknown = await remote.connect({})
    expect(unknown.accepted).toBeDefined()
    unknown.accepted!.destroy()
    expect(f.tracker.totals.total).toBe(1)
  })
})
