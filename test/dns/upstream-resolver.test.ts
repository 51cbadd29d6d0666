import dgram from 'node:dgram'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import * as dnsPacket from 'dns-packet'
import { FrameDecoder, frame } from '../../src/dns/framing'
import { UpstreamResolver } from '../../src/dns/upstream-resolver'
import { bigAnswer, decode, defaultResponder, makeQuery, rcode, type Responder } from './helpers'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A loopback DNS server on UDP and TCP (same port), recording the source ports it saw. */
async function fakeUdpDns(responder: Responder = defaultResponder, tcpResponder?: Responder) {
  // One port number for UDP and TCP: a free UDP port may be taken for TCP by a test running in
  // parallel, so retry with a fresh one instead of hanging on a listen that fails.
  let udp!: dgram.Socket
  let tcpOk = false
  let port = 0
  const tcp = net.createServer((s) => onTcp(s))
  for (let attempt = 0; !tcpOk; attempt++) {
    udp = dgram.createSocket('udp4')
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()))
    port = udp.address().port
    tcpOk = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false))
      tcp.listen(port, '127.0.0.1', () => r(true))
    })
    if (!tcpOk) {
      udp.close()
      if (attempt > 20) throw new Error('no port free for both UDP and TCP')
    }
  }
  tcp.removeAllListeners('error')
  const seen = { udpPorts: [] as number[], tcpPorts: [] as number[], ids: [] as number[] }
  udp.on('message', (msg, rinfo) => {
    seen.udpPorts.push(rinfo.port)
    const q = dnsPacket.decode(msg)
    seen.ids.push(q.id!)
    const r = responder(q, msg)
    const answers = r?.answer === undefined ? [] : Array.isArray(r.answer) ? r.answer : [r.answer]
    setTimeout(() => answers.forEach((m) => udp.send(m, rinfo.port, rinfo.address)), r?.delayMs ?? 0)
  })
  function onTcp(s: net.Socket): void {
    seen.tcpPorts.push(s.remotePort!)
    s.on('error', () => {})
    const dec = new FrameDecoder()
    s.on('data', (c: Buffer) => {
      for (const f of dec.push(c).frames) {
        const raw = Buffer.from(f)
        const a = (tcpResponder ?? responder)(dnsPacket.decode(raw), raw)?.answer
        if (a && !Array.isArray(a)) s.write(frame(a))
      }
    })
  }
  cleanups.push(() => new Promise<void>((r) => { udp.close(); tcp.close(() => r()) }))
  return { port, seen }
}

async function upstream(servers: number[], opts: { timeoutMs?: number } = {}) {
  const u = new UpstreamResolver({ servers: servers.map((port) => ({ host: '127.0.0.1', port })), ...opts })
  await u.start()
  cleanups.push(() => u.close())
  return u
}

describe('UpstreamResolver', () => {
  it('forwards from its one fixed, exempt source port and restores the id', async () => {
    const f = await fakeUdpDns()
    const u = await upstream([f.port])
    expect(u.exemptPorts()).toEqual([u.port])
    expect(u.port).toBeGreaterThan(0)
    const ans = await u.query(makeQuery('www.example.com', 'A', { id: 31337 }))
    expect(decode(ans).id).toBe(31337)
    expect(decode(ans).answers![0].data).toBe(`10.0.0.${'www.example.com'.length}`)
    expect(f.seen.udpPorts).toEqual([u.port])
  })

  it('keeps concurrent clients with the same id apart', async () => {
    const f = await fakeUdpDns((q, raw) => ({ ...defaultResponder(q, raw), delayMs: Math.random() * 30 }))
    const u = await upstream([f.port])
    const names = Array.from({ length: 50 }, (_, i) => `n${i}.example`)
    const answers = await Promise.all(names.map((n) => u.query(makeQuery(n, 'A', { id: 7 }))))
    answers.forEach((a, i) => {
      expect(decode(a).id).toBe(7)
      expect(decode(a).questions![0].name).toBe(names[i])
    })
    expect(new Set(f.seen.ids).size).toBeGreaterThan(40)
  })

  it('tries the next server after a timeout, then answers SERVFAIL', async () => {
    const dead = await fakeUdpDns(() => undefined)
    const live = await fakeUdpDns()
    const u = await upstream([dead.port, live.port], { timeoutMs: 100 })
    expect(rcode(await u.query(makeQuery('x.example')))).toBe(0)
    expect(dead.seen.udpPorts).toHaveLength(1)
    const u2 = await upstream([dead.port], { timeoutMs: 50 })
    const ans = await u2.query(makeQuery('x.example', 'A', { id: 3 }))
    expect(rcode(ans)).toBe(2)
    expect(decode(ans).id).toBe(3)
    expect(u2.stats()).toMatchObject({ timeouts: 2, failures: 1 })
  })

  it('ignores answers from another address/port or for another question', async () => {
    const f = await fakeUdpDns((q, raw) => {
      const wrong = dnsPacket.encode({ type: 'response', id: q.id, questions: [{ name: 'evil.example', type: 'A' }] })
      return { answer: [wrong, defaultResponder(q, raw)!.answer as Buffer] }
    })
    const u = await upstream([f.port])
    expect(decode(await u.query(makeQuery('good.example'))).questions![0].name).toBe('good.example')
  })

  it('retries a truncated answer over TCP for TCP clients, from the same local port', async () => {
    const f = await fakeUdpDns(
      (q, raw) => {
        const full = bigAnswer(raw, 100)
        const tc = Buffer.from(full.subarray(0, 12 + raw.length - 12))
        raw.copy(tc, 12, 12)
        tc.writeUInt16BE(0, 6)
        tc[2] |= 0x82 // QR, TC
        return { answer: tc }
      },
      (q, raw) => ({ answer: bigAnswer(raw, 100) }),
    )
    const u = await upstream([f.port])
    const viaUdp = await u.query(makeQuery('big.example'), 'udp')
    expect(decode(viaUdp).flag_tc).toBe(true)
    for (let i = 0; i < 3; i++) {
      const viaTcp = await u.query(makeQuery('big.example', 'A', { id: 100 + i }), 'tcp')
      expect(decode(viaTcp).flag_tc).toBe(false)
      expect(decode(viaTcp).answers).toHaveLength(100)
      expect(decode(viaTcp).id).toBe(100 + i)
    }
    // Three sequential fallbacks from the same port: the RST close left no TIME_WAIT behind.
    expect(f.seen.tcpPorts).toEqual([u.port, u.port, u.port])
    expect(u.stats().tcpFallbacks).toBe(3)
  })

  it('answers SERVFAIL without servers and after close()', async () => {
    const u = new UpstreamResolver({ servers: [] })
    await u.start()
    cleanups.push(() => u.close())
    expect(rcode(await u.query(makeQuery('x.example')))).toBe(2)
    const f = await fakeUdpDns()
    const u2 = await upstream([f.port])
    u2.close()
    expect(rcode(await u2.query(makeQuery('x.example')))).toBe(2)
  })
})
