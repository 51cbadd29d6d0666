import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { promises as dnsPromises } from 'node:dns'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { DnsCache } from '../../src/dns/cache'
import { DnsService } from '../../src/dns/dns-service'
import { FrameDecoder, frame } from '../../src/dns/framing'
import { DnsInterceptor } from '../../src/dns/interceptor'
import { TunnelResolver } from '../../src/dns/tunnel-resolver'
import { memoryLogger } from '../../src/observe/logger'
import { trickle } from '../router/proxy-test-helpers'
import { FakeTcpDns, loopbackDialer, a, bigAnswer, decode, defaultResponder, makeAnswer, makeQuery } from './helpers'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** The whole chain on real sockets: interceptor → service → tunnel resolver → fake dialer → fake remote DNS. */
async function stack(opts: { ipv6?: boolean; tcpIdleMs?: number; maxTcpPerSource?: number; gatewayPort?: number } = {}) {
  const fake = new FakeTcpDns((q, raw) => {
    const name = q.questions![0].name
    if (name === 'big.corp.internal') return { answer: bigAnswer(raw, 100) }
    if (name.startsWith('slow')) return { ...defaultResponder(q, raw), delayMs: 100 }
    return { answer: makeAnswer(raw, { answers: [a(name, '10.0.1.20', 60)] }) }
  })
  await fake.start()
  cleanups.push(() => fake.stop())
  const dialer = loopbackDialer(() => fake.port)
  const log = memoryLogger('debug')
  const tunnel = new TunnelResolver({ dialer, servers: [{ host: '10.0.0.2', port: 53 }], log })
  cleanups.push(() => tunnel.close())
  const svc = new DnsService({ tunnel, cache: new DnsCache(), log })
  const ic = new DnsInterceptor({
    handler: svc, port: 0, ipv6: opts.ipv6 ?? false, log, tcpIdleMs: opts.tcpIdleMs, maxTcpPerSource: opts.maxTcpPerSource,
    ...(opts.gatewayPort !== undefined && { gatewayPort: opts.gatewayPort }),
  })
  const port = await ic.start()
  cleanups.push(() => ic.stop())
  return { port, fake, dialer, svc, ic, log }
}

function dig(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('dig', args, { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)))
  })
}

describe('DnsInterceptor', () => {
  it('answers a real resolver client over UDP on 127.0.0.1', async () => {
    const { port } = await stack()
    const r = new dnsPromises.Resolver({ timeout: 2000, tries: 1 })
    r.setServers([`127.0.0.1:${port}`])
    expect(await r.resolve4('db.corp.internal')).toEqual(['10.0.1.20'])
  })

  it('serves ::1 on the same port when ipv6 is on', async () => {
    const { port } = await stack({ ipv6: true })
    const out = await dig(['@::1', '-p', String(port), 'db.corp.internal', 'A', '+short', '+tries=1', '+time=2'])
    expect(out.trim()).toBe('10.0.1.20')
    const out6tcp = await dig(['@::1', '-p', String(port), 'db.corp.internal', 'A', '+short', '+tcp', '+tries=1', '+time=2'])
    expect(out6tcp.trim()).toBe('10.0.1.20')
  })

  it('dig: a large answer is truncated over UDP and dig retries over TCP', async () => {
    const { port, svc } = await stack()
    const out = await dig(['@127.0.0.1', '-p', String(port), 'big.corp.internal', 'A', '+noedns', '+tries=1', '+time=3'])
    expect(out).toContain('Truncated, retrying in TCP mode')
    expect(out).toMatch(/ANSWER: 100,/)
    expect(svc.stats()).toMatchObject({ udp: 1, tcp: 1, truncated: 1 })
  })

  it('dig +tcp works', async () => {
    const { port } = await stack()
    const out = await dig(['@127.0.0.1', '-p', String(port), 'db.corp.internal', '+tcp', '+short', '+tries=1', '+time=2'])
    expect(out.trim()).toBe('10.0.1.20')
  })

  it('answers pipelined queries on one TCP connection out of order', async () => {
    const { port } = await stack()
    const sock = net.connect({ host: '127.0.0.1', port })
    cleanups.push(() => sock.destroy())
    await new Promise((r) => sock.once('connect', r))
    const names = ['slow1.corp.internal', 'fast1.corp.internal', 'slow2.corp.internal', 'fast2.corp.internal']
    sock.write(Buffer.concat(names.map((n, i) => frame(makeQuery(n, 'A', { id: 100 + i })))))
    const dec = new FrameDecoder()
    const got: { id: number; name: string }[] = []
    await new Promise<void>((resolve) => {
      sock.on('data', (c: Buffer) => {
        for (const f of dec.push(c).frames) {
          const p = decode(Buffer.from(f))
          got.push({ id: p.id!, name: p.questions![0].name })
        }
        if (got.length === names.length) resolve()
      })
    })
    expect(got.map((g) => g.name).slice(0, 2).sort()).toEqual(['fast1.corp.internal', 'fast2.corp.internal'])
    expect(got.map((g) => g.id).sort()).toEqual([100, 101, 102, 103])
  })

  it('survives garbage over UDP and TCP and keeps answering', async () => {
    const { port } = await stack()
    const u = dgram.createSocket('udp4')
    cleanups.push(() => u.close())
    for (const g of [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(2000, 0xff), Buffer.from('abcd0100000100000000000003', 'hex')]) {
      u.send(g, port, '127.0.0.1')
    }
    const t = net.connect({ host: '127.0.0.1', port })
    t.on('error', () => {})
    await new Promise((r) => t.once('connect', r))
    t.write(Buffer.from([0xff, 0xff, 1, 2, 3]))
    t.end(Buffer.from([0, 1, 0]))
    await new Promise((r) => setTimeout(r, 50))
    const out = await dig(['@127.0.0.1', '-p', String(port), 'still.corp.internal', '+short', '+tries=1', '+time=2'])
    expect(out.trim()).toBe('10.0.1.20')
  })

  it('gateway mode: the first port on 127.0.0.1 and ::1 only (answers from there), a second one on every address', async () => {
    const { port, ic } = await stack({ ipv6: true, gatewayPort: 0 })
    const gw = ic.gatewayPort!
    expect(gw).toBeGreaterThan(0)
    expect(gw).not.toBe(port)
    const ask = (server: string, p: number, ...more: string[]): Promise<string> => new Promise((resolve) => {
      execFile('dig', [`@${server}`, '-p', String(p), 'db.corp.internal', 'A', '+short', '+tries=1', '+time=1', ...more], { timeout: 10_000 },
        (_err, stdout) => resolve(stdout.trim()))
    })
    for (const [server, p] of [['127.0.0.1', port], ['::1', port], ['127.0.0.1', gw], ['::1', gw]] as const) {
      expect(await ask(server, p), `${server} ${p}`).toBe('10.0.1.20')
      expect(await ask(server, p, '+tcp'), `${server} ${p} tcp`).toBe('10.0.1.20')
    }
    // Every address on the second port; the first one is not on another loopback address. (TCP:
    // over UDP, the wildcard socket would answer 127.0.0.2 from 127.0.0.1, which dig rejects as
    // from an unexpected source — the reason for a loopback-bound first port.)
    expect(await ask('127.0.0.2', gw, '+tcp')).toBe('10.0.1.20')
    expect(await ask('127.0.0.2', gw)).not.toContain('10.0.1.20')
    expect(await ask('127.0.0.2', port, '+tcp')).not.toContain('10.0.1.20')
    // Bound without SO_REUSEADDR: nobody can bind the wildcard address on it beside us.
    const u = dgram.createSocket('udp4')
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      u.once('error', resolve)
      u.bind(port, '0.0.0.0', () => resolve(undefined))
    })
    u.close()
    expect(err?.code).toBe('EADDRINUSE')
  })

  it('start() picks one free port for UDP and TCP; a taken port is PORT_IN_USE', async () => {
    const { port } = await stack()
    const ic = new DnsInterceptor({ handler: { handle: async () => undefined }, port, ipv6: false })
    await expect(ic.start()).rejects.toMatchObject({ code: 'PORT_IN_USE' })
  })

  it('finishes answers after the client half-closes', async () => {
    const { port } = await stack()
    const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    cleanups.push(() => sock.destroy())
    await new Promise((r) => sock.once('connect', r))
    sock.end(frame(makeQuery('slow3.corp.internal', 'A', { id: 5 })))
    const chunks: Buffer[] = []
    await new Promise<void>((resolve) => {
      sock.on('data', (c: Buffer) => chunks.push(c))
      sock.on('end', () => resolve())
    })
    const frames = new FrameDecoder().push(Buffer.concat(chunks)).frames
    expect(frames.map((f) => decode(Buffer.from(f)).id)).toEqual([5])
  })

  it('closes a TCP client trickling a query one byte every 30 ms at the idle deadline, also after an answer', async () => {
    const { port } = await stack({ tcpIdleMs: 400 })
    // A frame announcing 300 bytes that never completes: each byte would reset an idle timer.
    const partial = Buffer.concat([Buffer.from([1, 44]), Buffer.alloc(300, 0x61)])
    const fresh = await tcpConnect(port)
    const took = await trickle(fresh, partial, 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!).toBeLessThan(1_500)
    // After an answer the connection is idle again, and the next query is held to the same deadline.
    const used = await tcpConnect(port)
    used.write(frame(makeQuery('db.corp.internal', 'A', { id: 9 })))
    await new Promise((r) => used.once('data', r))
    const again = await trickle(used, partial, 30, 3_000)
    expect(again, 'still open 3 s later').toBeDefined()
    expect(again!).toBeLessThan(1_500)
  })

  it('resets TCP clients over the per-source cap, and takes new ones once others left', async () => {
    const { port, log } = await stack({ maxTcpPerSource: 2 })
    const held = [await tcpConnect(port), await tcpConnect(port)]
    await new Promise((r) => setTimeout(r, 50))
    const excess = net.connect({ host: '127.0.0.1', port })
    const ended = await new Promise<string>((r) => {
      excess.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'))
      excess.on('close', () => r('closed'))
    })
    expect(ended).toBe('ECONNRESET')
    expect(log.lines.join('\n')).toMatch(/\[dns\] warning: dns tcp: refused 127\.0\.0\.1: 2 connections/)
    held[0]!.destroy()
    await new Promise((r) => setTimeout(r, 50))
    const out = await dig(['@127.0.0.1', '-p', String(port), 'db.corp.internal', '+tcp', '+short', '+tries=1', '+time=2'])
    expect(out.trim()).toBe('10.0.1.20')
    held[1]!.destroy()
  })
})

describe('DnsInterceptor: only what was redirected', () => {
  /** An interceptor whose handler echoes the query and counts calls. */
  async function echo(opts: Partial<ConstructorParameters<typeof DnsInterceptor>[0]> = {}) {
    const seen: string[] = []
    const ic = new DnsInterceptor({
      handler: { handle: async (q, via) => (seen.push(via), q) },
      port: 0,
      ipv6: false,
      log: memoryLogger('debug'),
      ...opts,
    })
    const port = await ic.start()
    cleanups.push(() => ic.stop())
    return { ic, port, seen }
  }
  const udpAsk = (port: number, waitMs = 400): Promise<Buffer | 'none' | string> =>
    new Promise((resolve) => {
      const s = dgram.createSocket('udp4')
      const done = (v: Buffer | string): void => {
        clearTimeout(t)
        s.close()
        resolve(v)
      }
      const t = setTimeout(() => done('none'), waitMs)
      s.on('message', (m) => done(m))
      s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'))
      s.send(makeQuery('db.corp.internal'), port, '127.0.0.1')
    })
  const tcpAsk = (port: number): Promise<Buffer | string> =>
    new Promise((resolve) => {
      const dec = new FrameDecoder()
      const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(frame(makeQuery('db.corp.internal'))))
      s.on('data', (d) => {
        const { frames } = dec.push(d)
        if (frames.length > 0) {
          s.destroy()
          resolve(frames[0])
        }
      })
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      s.on('close', () => resolve('closed'))
    })

  it('TCP: a connection isRedirected does not vouch for is reset before any query is read (a throw counts as no)', async () => {
    const families: number[] = []
    let verdict: boolean | 'throw' = false
    const { port, seen } = await echo({
      isRedirected: (_s, family) => {
        families.push(family)
        if (verdict === 'throw') throw new Error('no original destination')
        return verdict
      },
    })
    expect(await tcpAsk(port)).toBe('ECONNRESET')
    verdict = 'throw'
    expect(await tcpAsk(port)).toBe('ECONNRESET')
    expect(seen).toEqual([])
    verdict = true
    expect(await tcpAsk(port)).toBeInstanceOf(Buffer)
    expect(seen).toEqual(['tcp'])
    expect(families).toEqual([4, 4, 4])
  })

  it('UDP held: datagrams are dropped unanswered until answerUdp(true), and again after answerUdp(false)', async () => {
    const { ic, port, seen } = await echo({ holdUdp: true })
    expect(await udpAsk(port)).toBe('none')
    ic.answerUdp(true)
    expect(await udpAsk(port)).toBeInstanceOf(Buffer)
    ic.answerUdp(false)
    expect(await udpAsk(port)).toBe('none')
    expect(seen).toEqual(['udp'])
  })

  it('udp: false binds TCP only (the TUN engine answers UDP itself)', async () => {
    const { port, seen } = await echo({ udp: false })
    expect(await tcpAsk(port)).toBeInstanceOf(Buffer)
    expect(await udpAsk(port)).not.toBeInstanceOf(Buffer)
    expect(seen).toEqual(['tcp'])
  })
})

async function tcpConnect(port: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port })
  cleanups.push(() => s.destroy())
  s.on('error', () => {})
  await new Promise((r) => s.once('connect', r))
  return s
}
