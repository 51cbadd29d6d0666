import { afterEach, describe, expect, it } from 'vitest'
import { PassThrough } from 'node:stream'
import { TunnelError } from '../../src/errors'
import { TunnelResolver, type TunnelResolverOptions } from '../../src/dns/tunnel-resolver'
import { memoryLogger } from '../../src/observe/logger'
import type { Dialer } from '../../src/router/types'
import net from 'node:net'
import dnsPacket from 'dns-packet'
import { FrameDecoder, frame } from '../../src/dns/framing'
import { FakeTcpDns, loopbackDialer, a, decode, defaultResponder, makeAnswer, makeQuery, rcode } from './helpers'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function setup(opts: Partial<TunnelResolverOptions> = {}, servers = 1) {
  const fakes: FakeTcpDns[] = []
  for (let i = 0; i < servers; i++) {
    const f = new FakeTcpDns()
    await f.start()
    cleanups.push(() => f.stop())
    fakes.push(f)
  }
  // Remote resolver i is "10.0.0.<i+2>:53"; the fake dialer maps it to fake server i.
  const dialer = loopbackDialer((dst) => fakes[Number(dst.host.split('.')[3]) - 2].port)
  const log = memoryLogger()
  const r = new TunnelResolver({
    dialer,
    servers: fakes.map((_, i) => ({ host: `10.0.0.${i + 2}`, port: 53 })),
    log,
    ...opts,
  })
  cleanups.push(() => r.close())
  return { r, fake: fakes[0], fakes, dialer, log }
}

/** Like dnsmasq: answers queries in order on each connection and closes it after `limit`. */
async function limitedServer(limit: number) {
  const perConn: number[] = []
  const server = net.createServer((sock) => {
    const idx = perConn.push(0) - 1
    const dec = new FrameDecoder()
    sock.on('error', () => {})
    sock.on('data', (chunk: Buffer) => {
      for (const f of dec.push(chunk).frames) {
        if (perConn[idx] >= limit) continue // past the limit: the query is lost with the close
        perConn[idx]++
        sock.write(frame(defaultResponder(dnsPacket.decode(Buffer.from(f)), Buffer.from(f))!.answer as Buffer))
        if (perConn[idx] === limit) sock.end()
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  cleanups.push(() => new Promise((r) => server.close(() => r(undefined))))
  return { port: (server.address() as net.AddressInfo).port, perConn }
}

describe('TunnelResolver', () => {
  it('learns a resolver that closes connections after N queries, and rotates channels before N', async () => {
    const srv = await limitedServer(10)
    const dialer = loopbackDialer(() => srv.port)
    const log = memoryLogger()
    const r = new TunnelResolver({ dialer, servers: [{ host: '10.0.0.2', port: 53 }], poolSize: 2, log })
    cleanups.push(() => r.close())
    const batch = (from: number, n: number) =>
      Promise.all(Array.from({ length: n }, (_, i) => r.query(makeQuery(`q${from + i}.corp.internal`, 'A'))))
    // First burst: more than one connection's worth; some queries are lost at the close and retried.
    for (const ans of await batch(0, 30)) expect(rcode(ans)).toBe(0)
    expect(log.lines.join('\n')).toMatch(/closes a connection after 10 queries/)
    const retriesBefore = r.stats().retries
    // Afterwards no channel is sent more than 10 queries, so nothing is lost or retried.
    const connsBefore = srv.perConn.length
    for (let k = 0; k < 5; k++) for (const ans of await batch(100 + k * 25, 25)) expect(rcode(ans)).toBe(0)
    expect(r.stats().retries).toBe(retriesBefore)
    expect(srv.perConn.slice(connsBefore).every((n) => n <= 10)).toBe(true)
  })

  it('answers a query through a dialled channel, with the original id', async () => {
    const { r, fake, dialer } = await setup()
    const ans = await r.query(makeQuery('db.corp.internal', 'A', { id: 4242 }))
    const p = decode(ans)
    expect(p.id).toBe(4242)
    expect(p.answers![0].data).toBe(`10.0.0.${'db.corp.internal'.length}`)
    expect(dialer.dsts).toEqual([{ host: '10.0.0.2', port: 53 }])
    expect(dialer.metas[0].frontEnd).toBe('dns')
    // The id on the wire is our own, not the client's.
    expect(fake.queries).toHaveLength(1)
  })

  it('pipelines many concurrent queries with colliding client ids over at most poolSize channels, answered out of order', async () => {
    const { r, fake, dialer } = await setup({ poolSize: 2 })
    // Answer in reverse order of arrival: a longer delay for earlier names.
    fake.responder = (q, raw) => ({ ...defaultResponder(q, raw), delayMs: 200 - Number(q.questions![0].name.split('.')[0].slice(1)) })
    const n = 150
    // Every client uses id 1: remapping must keep them apart.
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => r.query(makeQuery(`h${i}.corp.internal`, 'A', { id: 1 }))))
    answers.forEach((ans, i) => {
      const p = decode(ans)
      expect(p.id).toBe(1)
      expect(p.questions![0].name).toBe(`h${i}.corp.internal`)
      expect(p.answers![0].data).toBe(`10.0.0.${`h${i}.corp.internal`.length}`)
    })
    expect(dialer.dsts.length).toBeLessThanOrEqual(2)
    expect(fake.connections).toBeLessThanOrEqual(2)
    // Wire ids were unique per connection at any time; at least some differ from the client's.
    expect(new Set(fake.queries.map((q) => q.id)).size).toBeGreaterThan(n / 2)
    expect(r.stats()).toMatchObject({ queries: n, answers: n, failures: 0 })
  })

  it('reuses an open channel for sequential queries (no dial per query)', async () => {
    const { r, dialer } = await setup()
    for (let i = 0; i < 10; i++) await r.query(makeQuery(`s${i}.example`))
    expect(dialer.dsts).toHaveLength(1)
  })

  it('a timed-out query is retried on a fresh channel', async () => {
    const { r, fake, dialer } = await setup({ timeoutMs: 150 })
    let first = true
    fake.responder = (q, raw) => {
      if (first) {
        first = false
        return undefined // swallow the first attempt
      }
      return defaultResponder(q, raw)
    }
    const ans = await r.query(makeQuery('slow.example', 'A', { id: 9 }))
    expect(rcode(ans)).toBe(0)
    expect(decode(ans).id).toBe(9)
    expect(dialer.dsts).toHaveLength(2)
    expect(fake.connections).toBe(2)
    expect(r.stats()).toMatchObject({ timeouts: 1, retries: 1, answers: 1 })
  })

  it('answers SERVFAIL when every attempt times out', async () => {
    const { r, fake } = await setup({ timeoutMs: 100, attempts: 2 })
    fake.responder = () => undefined
    const t0 = Date.now()
    const ans = await r.query(makeQuery('dead.example', 'A', { id: 55 }))
    expect(rcode(ans)).toBe(2)
    expect(decode(ans).id).toBe(55)
    expect(decode(ans).questions![0].name).toBe('dead.example')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190)
    expect(r.stats()).toMatchObject({ timeouts: 2, failures: 1 })
  })

  it('queries in flight on a channel that dies are retried on a new one', async () => {
    const { r, fake, dialer } = await setup()
    let kill = true
    fake.responder = (q, raw) => {
      if (kill && q.questions![0].name === 'k3.example') {
        kill = false
        setTimeout(() => fake.killAll(), 20)
        return undefined
      }
      if (kill) return undefined // hold the others until the channel dies
      return defaultResponder(q, raw)
    }
    const answers = await Promise.all([1, 2, 3, 4].map((i) => r.query(makeQuery(`k${i}.example`, 'A', { id: i }))))
    answers.forEach((ans, i) => {
      expect(rcode(ans)).toBe(0)
      expect(decode(ans).id).toBe(i + 1)
    })
    expect(dialer.dsts.length).toBeGreaterThanOrEqual(2)
    expect(r.stats().failures).toBe(0)
  })

  it('after a dial failure (SSH down) the next query dials again and works', async () => {
    const { r, dialer, log } = await setup({ attempts: 1 })
    dialer.failNext = 1
    const bad = await r.query(makeQuery('x.example'))
    expect(rcode(bad)).toBe(2)
    expect(log.lines.some((l) => l.includes('cannot reach the remote resolver 10.0.0.2:53'))).toBe(true)
    const good = await r.query(makeQuery('x.example'))
    expect(rcode(good)).toBe(0)
    expect(dialer.dsts).toHaveLength(2)
  })

  it('moves on to the next remote resolver when one fails', async () => {
    const { r, fakes, dialer } = await setup({ timeoutMs: 100 }, 2)
    fakes[0].responder = () => undefined
    const ans = await r.query(makeQuery('x.example'))
    expect(rcode(ans)).toBe(0)
    expect(dialer.dsts.map((d) => d.host)).toEqual(['10.0.0.2', '10.0.0.3'])
    expect(r.currentServer).toBe('10.0.0.3:53')
    // Later queries go straight to the working one.
    await r.query(makeQuery('y.example'))
    expect(fakes[0].queries).toHaveLength(1)
  })

  it('ignores answers with an unknown id or a different question', async () => {
    const { r, fake } = await setup({ timeoutMs: 300 })
    fake.responder = (q, raw) => {
      const wrongId = Buffer.from(makeAnswer(raw, { answers: [a('x.example', '6.6.6.6')] }))
      wrongId.writeUInt16BE((q.id! + 1) & 0xffff, 0)
      const wrongQ = makeAnswer(makeQuery('evil.example', 'A', { id: q.id }), { answers: [a('evil.example', '6.6.6.6')] })
      const notAnAnswer = Buffer.from(raw) // QR=0: an echo of the query itself
      return { answer: [wrongId, wrongQ, notAnAnswer] }
    }
    const ans = await r.query(makeQuery('x.example'))
    // Neither bogus answer was accepted: after the attempts the client gets SERVFAIL.
    expect(rcode(ans)).toBe(2)
  })

  it('close() answers queries in flight with SERVFAIL and later ones too', async () => {
    const { r, fake } = await setup()
    fake.responder = () => undefined
    const p = r.query(makeQuery('x.example'))
    await new Promise((res) => setTimeout(res, 50))
    r.close()
    expect(rcode(await p)).toBe(2)
    expect(rcode(await r.query(makeQuery('y.example')))).toBe(2)
  })

  it('answers FORMERR to garbage without dialling', async () => {
    const { r, dialer } = await setup()
    expect(rcode(await r.query(Buffer.from('0001000100000000000000', 'hex')))).toBe(1)
    expect(dialer.dsts).toHaveLength(0)
  })

  it('closes idle channels and dials again on demand', async () => {
    const { r, fake, dialer } = await setup({ idleMs: 50 })
    await r.query(makeQuery('x.example'))
    await new Promise((res) => setTimeout(res, 150))
    expect(fake.sockets.size).toBe(0)
    expect(r.stats().channels).toBe(0)
    await r.query(makeQuery('x.example'))
    expect(dialer.dsts).toHaveLength(2)
  })

  it('treats a CHANNEL_OPEN refusal like any dial failure', async () => {
    const dialer: Dialer = { dial: async () => { throw new TunnelError('CHANNEL_OPEN', 'ssh: open 10.0.0.2:53: connection refused') } }
    const r = new TunnelResolver({ dialer, servers: [{ host: '10.0.0.2', port: 53 }] })
    cleanups.push(() => r.close())
    expect(rcode(await r.query(makeQuery('x.example')))).toBe(2)
    expect(r.stats()).toMatchObject({ dialFailures: 2, failures: 1 })
  })

  it('survives a resolver that sends garbage frames', async () => {
    const stream = new PassThrough()
    const dialer: Dialer = { dial: async () => stream }
    const r = new TunnelResolver({ dialer, servers: [{ host: '10.0.0.2', port: 53 }], timeoutMs: 100, attempts: 1 })
    cleanups.push(() => r.close())
    const p = r.query(makeQuery('x.example'))
    await new Promise((res) => setTimeout(res, 10))
    stream.emit('data', Buffer.from([0, 3, 1, 2, 3, 0, 20, 9, 9]))
    expect(rcode(await p)).toBe(2)
  })
})

describe('TunnelResolver with a misbehaving Dialer', () => {
  it('a Dialer that throws synchronously still yields SERVFAIL, never a rejection', async () => {
    const dialer = { dial: () => { throw new Error('boom') } } as unknown as Dialer
    const r = new TunnelResolver({ dialer, servers: [{ host: '10.0.0.2', port: 53 }] })
    expect(rcode(await r.query(makeQuery('x.example')))).toBe(2)
    r.close()
  })
})
