import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { TunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'
import type { Destination, Dialer } from '../../src/router/types'
import { FakeDialer } from '../fakes/fake-dialer'
import { RouteTable } from '../../src/router/route-table'
import { TransparentListener } from '../../src/router/transparent'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

async function echoServer(): Promise<net.Server> {
  // Echoes, and on the client's FIN sends "bye" then its own FIN: proves half-close both ways.
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d) => s.write(d))
    s.on('end', () => s.end('bye'))
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  cleanups.push(() => new Promise((r) => srv.close(r)))
  return srv
}

async function startListener(
  dialer: Dialer,
  originalDst: Destination | (() => Promise<Destination>),
  routes = ['10.0.0.0/8'],
) {
  const log = memoryLogger()
  const l = new TransparentListener({
    port: 0,
    ipv6: false,
    routes: new RouteTable(routes.map((c) => ({ cidr: parseCidr(c), action: 'tunnel' as const }))),
    dialer,
    originalDst: typeof originalDst === 'function' ? originalDst : () => originalDst,
    log,
  })
  const port = await l.start()
  cleanups.push(() => l.stop())
  return { l, port, log }
}

function collect(sock: net.Socket): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = ''
    sock.on('data', (d) => (data += d))
    sock.on('error', (e: NodeJS.ErrnoException) => resolve({ data, error: e.code }))
    sock.on('close', () => resolve({ data }))
  })
}

describe('TransparentListener', () => {
  it('pipes both ways and propagates half-close', async () => {
    const echo = await echoServer()
    const dialer = new FakeDialer().otherwise({ port: () => (echo.address() as net.AddressInfo).port })
    const { port, l } = await startListener(dialer, { host: '10.1.2.3', port: 3306 })
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const done = collect(c)
    c.write('hello ')
    c.end('world')
    const r = await done
    expect(r.error).toBeUndefined()
    expect(r.data).toBe('hello worldbye')
    expect(dialer.dsts).toEqual([{ host: '10.1.2.3', port: 3306 }])
    await new Promise((res) => setTimeout(res, 20))
    expect(l.tracker.totals).toMatchObject({ active: 0, total: 1, failed: 0, bytesUp: 11, bytesDown: 14 })
  })

  it('an asynchronous lookup (pf asks the helper) keeps early client bytes; a failed one resets', async () => {
    const echo = await echoServer()
    const dialer = new FakeDialer().otherwise({ port: () => (echo.address() as net.AddressInfo).port })
    const slow = () => new Promise<Destination>((r) => setTimeout(() => r({ host: '10.9.9.9', port: 5432 }), 30))
    const { port } = await startListener(dialer, slow)
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const done = collect(c)
    c.end('sent before the lookup answered')
    expect((await done).data).toBe('sent before the lookup answeredbye')
    expect(dialer.dsts).toEqual([{ host: '10.9.9.9', port: 5432 }])

    const failing = await startListener(dialer, () => Promise.reject(new Error('no pf state')))
    expect((await collect(net.connect({ port: failing.port, host: '127.0.0.1' }))).error).toBe('ECONNRESET')
    expect(dialer.dialed).toHaveLength(1)
  })

  it('resets the client promptly when the channel open fails, and logs the destination', async () => {
    const err = new TunnelError('CHANNEL_OPEN', 'ssh: open 10.1.2.3:81: connection refused')
    const { port, log } = await startListener(new FakeDialer().otherwise(err), { host: '10.1.2.3', port: 81 })
    const c = net.connect({ port, host: '127.0.0.1' })
    const t0 = Date.now()
    const r = await collect(c)
    expect(r.error).toBe('ECONNRESET')
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(log.lines.join('\n')).toMatch(/10\.1\.2\.3:81.*connection refused/)
  })

  it('refuses destinations outside the routed subnets without dialling', async () => {
    const dialer = new FakeDialer().otherwise({ port: () => 1 })
    const { port } = await startListener(dialer, { host: '192.168.9.9', port: 80 })
    const r = await collect(net.connect({ port, host: '127.0.0.1' }))
    expect(r.error).toBe('ECONNRESET')
    expect(dialer.dialed).toEqual([])
  })

  it('reports a busy port as PORT_IN_USE', async () => {
    const busy = net.createServer()
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
    cleanups.push(() => new Promise((r) => busy.close(r)))
    const l = new TransparentListener({
      port: (busy.address() as net.AddressInfo).port,
      ipv6: false,
      routes: new RouteTable(),
      dialer: new FakeDialer().otherwise({ port: () => 1 }),
      originalDst: () => ({ host: '10.0.0.1', port: 1 }),
      log: memoryLogger(),
    })
    await expect(l.start()).rejects.toMatchObject({ code: 'PORT_IN_USE' })
  })

  it('keeps client bytes sent before the channel opens', async () => {
    const echo = await echoServer()
    const slow: Dialer = {
      async dial() {
        await new Promise((r) => setTimeout(r, 150))
        const s = net.connect({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port, allowHalfOpen: true })
        await new Promise((r) => s.once('connect', r))
        return s
      },
    }
    const { port } = await startListener(slow, { host: '10.0.0.9', port: 22 })
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const done = collect(c)
    c.end('early')
    expect((await done).data).toBe('earlybye')
  })

  it('forwards a FIN sent with no data before the channel opens', async () => {
    const echo = await echoServer()
    const slow: Dialer = {
      async dial() {
        await new Promise((r) => setTimeout(r, 150))
        const s = net.connect({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port, allowHalfOpen: true })
        await new Promise((r) => s.once('connect', r))
        return s
      },
    }
    const { port } = await startListener(slow, { host: '10.0.0.9', port: 22 })
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const done = collect(c)
    c.end()
    expect((await done).data).toBe('bye')
  })

  it('moves a large transfer intact with backpressure (8 MiB)', async () => {
    const size = 8 * 1024 * 1024
    const sink = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0
      s.on('data', (d) => (n += d.length))
      s.on('end', () => s.end(String(n)))
    })
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r))
    cleanups.push(() => new Promise((r) => sink.close(r)))
    const { port } = await startListener(new FakeDialer().otherwise({ port: () => (sink.address() as net.AddressInfo).port }), {
      host: '10.0.0.1',
      port: 9,
    })
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    const done = collect(c)
    const chunk = Buffer.alloc(64 * 1024, 7)
    for (let i = 0; i < size / chunk.length; i++) {
      if (!c.write(chunk)) await new Promise((r) => c.once('drain', r))
    }
    c.end()
    expect((await done).data).toBe(String(size))
  })
})
