import { describe, expect, it } from 'vitest'
import type { Endpoint, TcpConfig } from '../../src/netstack/stack'
import { ACK, FIN, PSH, RST, SYN } from '../../src/netstack/tcp-wire'
import { App, FakeChannel, type Out, makeStack, synOptions, tick } from './helpers'

const ISN = 1000

async function connect(o: { ws?: number; channel?: FakeChannel; tcp?: Partial<TcpConfig>; window?: number } = {}) {
  const ch = o.channel ?? new FakeChannel()
  const calls: [Endpoint, Endpoint][] = []
  const s = makeStack({
    openTcp: async (src, dst) => {
      calls.push([src, dst])
      return calls.length === 1 ? ch : new FakeChannel()
    },
    tcp: o.tcp,
  })
  const app = new App()
  s.stack.input(app.seg(ISN, 0, SYN, 64240, '', synOptions(1460, o.ws)))
  await tick()
  const [synack] = s.take()
  expect(synack.tcp!.flags).toBe(SYN | ACK)
  const iss = synack.tcp!.seq
  s.stack.input(app.seg(ISN + 1, iss + 1, ACK, o.window ?? 65535))
  await tick()
  const seq = { app: ISN + 1, stack: iss + 1 }
  return { ...s, ch, app, synack, calls, seq }
}

const data = (out: Out[]): string => out.filter((p) => p.tcp && p.tcp.payload.length > 0).map((p) => p.tcp!.payload.toString()).join('')

describe('TCP handshake', () => {
  it('answers the SYN only once the channel opens, and opens it once despite SYN retransmits', async () => {
    let resolve!: (d: FakeChannel) => void
    const calls: [Endpoint, Endpoint][] = []
    const s = makeStack({
      openTcp: (src, dst) => {
        calls.push([src, dst])
        return new Promise((r) => (resolve = r))
      },
    })
    const app = new App()
    const syn = app.seg(ISN, 0, SYN, 64240, '', synOptions(1460, 7))
    s.stack.input(syn)
    s.stack.input(syn)
    await tick()
    expect(s.out).toEqual([])
    s.stack.input(syn)
    expect(calls).toEqual([[{ host: '10.0.0.2', port: 40000, family: 4 }, { host: '10.1.2.3', port: 80, family: 4 }]])
    resolve(new FakeChannel())
    await tick()
    const [sa] = s.take()
    expect(sa.tcp).toMatchObject({ flags: SYN | ACK, ack: ISN + 1, mss: 1460, wscale: 4, window: 65535, srcPort: 80, dstPort: 40000 })
    // A SYN retransmitted after the SYN-ACK went out means the SYN-ACK was lost: same SYN-ACK again.
    s.stack.input(syn)
    expect(s.take()[0].tcp).toMatchObject({ flags: SYN | ACK, seq: sa.tcp!.seq })
    expect(s.stack.stats()).toMatchObject({ tcpActive: 1, tcpTotal: 1 })
  })

  it('offers no window scale to a peer that did not, and derives the MSS from the MTU (IPv6)', async () => {
    const s = makeStack({ openTcp: async () => new FakeChannel(), mtu: 1400 })
    const app = new App(6)
    s.stack.input(app.seg(ISN, 0, SYN, 64240, '', synOptions(1460)))
    await tick()
    const [sa] = s.take()
    expect(sa.ip.family).toBe(6)
    expect(sa.tcp).toMatchObject({ mss: 1340, wscale: -1 })
  })

  it('with the largest MTU (65535) negotiates a 64 KiB MSS and sends full-size segments', async () => {
    const ch = new FakeChannel()
    // 70000 is no valid MTU: clamped to 65535, so the MSS still fits its 16-bit field.
    const s = makeStack({ openTcp: async () => ch, mtu: 70_000 })
    const app = new App()
    s.stack.input(app.seg(ISN, 0, SYN, 65535, '', synOptions(65495, 7)))
    await tick()
    const [sa] = s.take()
    expect(sa.tcp).toMatchObject({ mss: 65495 })
    s.stack.input(app.seg(ISN + 1, sa.tcp!.seq + 1, ACK, 8192)) // 8192 << 7 = 1 MiB window
    await tick()
    ch.push(Buffer.alloc(150_000, 'b'))
    await tick()
    const segs = s.take()
    expect(segs.map((p) => p.tcp!.payload.length)).toEqual([65495, 65495, 150_000 - 2 * 65495])
    expect(segs.map((p) => p.ip.buf.length)).toEqual([65535, 65535, 150_000 - 2 * 65495 + 40])
  })

  it('retransmits the SYN-ACK and gives up with an RST', async () => {
    const s = await (async () => {
      const m = makeStack({ openTcp: async () => new FakeChannel(), tcp: { synAckRetries: 2 } })
      m.stack.input(new App().seg(ISN, 0, SYN, 64240))
      await tick()
      return m
    })()
    s.take()
    s.clock.advance(1000)
    expect(s.take().map((p) => p.tcp!.flags)).toEqual([SYN | ACK])
    s.clock.advance(2000)
    expect(s.take().map((p) => p.tcp!.flags)).toEqual([SYN | ACK])
    s.clock.advance(4000)
    expect(s.take().map((p) => p.tcp!.flags)).toEqual([RST | ACK])
    expect(s.stack.stats().tcpActive).toBe(0)
  })
})

describe('TCP data', () => {
  it('carries data both ways with cumulative, batched ACKs and one channel write per burst', async () => {
    const c = await connect()
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK | PSH, 65535, 'hello '))
    c.stack.input(c.app.seg(c.seq.app + 6, c.seq.stack, ACK | PSH, 65535, 'world'))
    await tick()
    expect(c.take()).toEqual([]) // deferred to the end of the burst
    expect(c.ch.received).toEqual([]) // and so is the data
    c.clock.advance(0)
    await tick()
    expect(c.ch.received.map((b) => b.toString())).toEqual(['hello world'])
    const acks = c.take()
    expect(acks).toHaveLength(1)
    expect(acks[0].tcp).toMatchObject({ flags: ACK, ack: c.seq.app + 11 })

    c.ch.push(Buffer.alloc(4000, 'x'))
    await tick()
    const segs = c.take()
    expect(segs.map((p) => p.tcp!.payload.length)).toEqual([1460, 1460, 1080])
    expect(segs.map((p) => p.tcp!.seq - c.seq.stack)).toEqual([0, 1460, 2920])
    expect(segs[2].tcp!.flags).toBe(ACK | PSH)
    expect(segs.every((p) => p.tcp!.ack === c.seq.app + 11)).toBe(true)
  })

  it('delivers out-of-order segments in order, with a duplicate ACK for the gap', async () => {
    const c = await connect()
    c.stack.input(c.app.seg(c.seq.app + 5, c.seq.stack, ACK, 65535, 'fghij'))
    c.stack.input(c.app.seg(c.seq.app + 10, c.seq.stack, ACK, 65535, 'klm'))
    await tick()
    expect(c.ch.text()).toBe('')
    expect(c.take().map((p) => p.tcp!.ack)).toEqual([c.seq.app, c.seq.app])
    // Overlapping retransmission covering the gap and part of the queued data.
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK, 65535, 'abcdefg'))
    c.clock.advance(0)
    await tick()
    expect(c.ch.text()).toBe('abcdefghijklm')
    expect(c.take().map((p) => p.tcp!.ack)).toEqual([c.seq.app + 13])
  })

  it('retransmits unacknowledged data with backoff, then resets', async () => {
    const c = await connect({ tcp: { maxRetries: 2 } })
    const errors: Error[] = []
    c.ch.on('error', (e) => errors.push(e))
    c.ch.push('payload')
    await tick()
    expect(data(c.take())).toBe('payload')
    // The handshake measured an RTT of 0 on the fake clock: RTO is the 200 ms floor.
    c.clock.advance(199)
    expect(c.take()).toEqual([])
    c.clock.advance(1)
    const [r1] = c.take()
    expect(r1.tcp).toMatchObject({ seq: c.seq.stack, flags: ACK | PSH })
    expect(r1.tcp!.payload.toString()).toBe('payload')
    c.clock.advance(399)
    expect(c.take()).toEqual([])
    c.clock.advance(1)
    expect(data(c.take())).toBe('payload')
    c.clock.advance(800)
    expect(c.take().map((p) => p.tcp!.flags)).toEqual([RST | ACK])
    await tick()
    expect(c.ch.destroyed).toBe(true)
    expect(errors[0]?.message).toMatch(/retransmission timeout/)
    expect(c.stack.stats()).toMatchObject({ tcpActive: 0, resets: 1 })
  })

  it('fast-retransmits after three duplicate ACKs', async () => {
    const c = await connect()
    c.ch.push(Buffer.alloc(5 * 1460, 'y'))
    await tick()
    expect(c.take()).toHaveLength(5)
    for (let i = 0; i < 3; i++) c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK, 65535))
    const [r] = c.take()
    expect(r.tcp).toMatchObject({ seq: c.seq.stack })
    expect(r.tcp!.payload.length).toBe(1460)
  })

  it('honours a zero window: nothing sent, persist probes, then data once it opens', async () => {
    const c = await connect({ window: 0 })
    c.ch.push('waiting')
    await tick()
    expect(c.take()).toEqual([])
    c.clock.advance(200)
    const [probe] = c.take()
    expect(probe.tcp).toMatchObject({ seq: c.seq.stack - 1, flags: ACK })
    expect(probe.tcp!.payload.length).toBe(0)
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK, 0)) // still full
    c.clock.advance(200)
    expect(c.take()).toEqual([]) // backed off: the next probe comes later
    c.clock.advance(200)
    expect(c.take()).toHaveLength(1)
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK, 100))
    expect(data(c.take())).toBe('waiting')
  })

  it('reads from the channel only as far as the peer window allows', async () => {
    const c = await connect({ window: 3000 })
    c.ch.push(Buffer.alloc(10_000))
    await tick()
    // Two full segments; the 80-byte rest waits (sender silly-window avoidance, RFC 9293 §3.8.6.2.1).
    expect(c.take().reduce((n, p) => n + p.tcp!.payload.length, 0)).toBe(2920)
    expect(c.ch.isPaused()).toBe(true)
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack + 2920, ACK, 20_000))
    await tick()
    expect(c.take().reduce((n, p) => n + p.tcp!.payload.length, 0)).toBe(7080)
  })
})

describe('TCP backpressure', () => {
  it('shrinks the advertised window to zero while the channel holds data, and reopens it on drain', async () => {
    const ch = new FakeChannel(1024)
    ch.hold = true
    const c = await connect({ channel: ch, tcp: { rcvBuf: 16 * 1024 } })
    const windows: number[] = [c.synack.tcp!.window]
    let seq = c.seq.app
    let sent = 0
    for (let i = 0; i < 40 && windows.at(-1)! > 0; i++) {
      const n = Math.min(1000, windows.at(-1)!)
      c.stack.input(c.app.seg(seq, c.seq.stack, ACK, 65535, Buffer.alloc(n, 'z')))
      seq += n
      sent += n
      c.clock.advance(0)
      for (const p of c.take()) windows.push(p.tcp!.window)
    }
    // No window scaling in this flow: the field is bytes.
    expect(windows.at(-1)).toBe(0)
    for (let i = 1; i < windows.length; i++) expect(windows[i]).toBeLessThanOrEqual(windows[i - 1])
    // Beyond the window: trimmed to nothing, ACK repeats the window edge.
    c.stack.input(c.app.seg(seq, c.seq.stack, ACK, 65535, Buffer.alloc(1000)))
    c.clock.advance(0)
    expect(c.take().map((p) => [p.tcp!.ack, p.tcp!.window])).toEqual([[seq, 0]])
    ch.release()
    await tick()
    await tick()
    const upd = c.take()
    expect(upd.length).toBeGreaterThan(0)
    expect(upd.at(-1)!.tcp!.window).toBeGreaterThan(8000)
    expect(sent).toBe(16 * 1024)
    expect(ch.received.reduce((n, b) => n + b.length, 0)).toBe(sent)
  })
})

describe('TCP close', () => {
  it('half-closes: the app FIN ends the channel, data still flows back, our FIN ends it', async () => {
    const c = await connect()
    let finished = false
    const errors: Error[] = []
    c.ch.on('finish', () => (finished = true))
    c.ch.on('error', (e) => errors.push(e))
    c.stack.input(c.app.seg(c.seq.app, c.seq.stack, ACK | FIN, 65535, 'req'))
    await tick()
    expect(c.ch.text()).toBe('req')
    expect(finished).toBe(true)
    expect(c.take().map((p) => p.tcp!.ack)).toEqual([c.seq.app + 4])
    c.ch.push('response')
    c.ch.push(null)
    await tick()
    const out = c.take()
    expect(data(out)).toBe('response')
    const fin = out.at(-1)!.tcp!
    expect(fin.flags & FIN).toBe(FIN)
    expect(fin.seq).toBe(c.seq.stack + 8)
    c.stack.input(c.app.seg(c.seq.app + 4, fin.seq + 1, ACK, 65535))
    expect(c.stack.stats().tcpActive).toBe(0) // passive close: no TIME-WAIT
    await tick()
    expect(errors).toEqual([]) // a clean close: the channel finishes by itself, no error
  })

  it('active close goes through a short TIME-WAIT that re-ACKs a retransmitted FIN', async () => {
    const c = await connect()
    c.ch.push(null)
    await tick()
    const fin = c.take()[0].tcp!
    expect(fin.flags).toBe(FIN | ACK)
    c.stack.input(c.app.seg(c.seq.app, fin.seq + 1, ACK | FIN, 65535))
    expect(c.take().map((p) => p.tcp!.ack)).toEqual([c.seq.app + 1])
    expect(c.stack.stats().tcpActive).toBe(1)
    c.stack.input(c.app.seg(c.seq.app, fin.seq + 1, ACK | FIN, 65535))
    expect(c.take().map((p) => p.tcp!.ack)).toEqual([c.seq.app + 1])
    c.clock.advance(2000)
    expect(c.stack.stats().tcpActive).toBe(0)
  })

  it('a new SYN on a TIME-WAIT tuple opens a new connection', async () => {
    const c = await connect()
    c.ch.push(null)
    await tick()
    const fin = c.take()[0].tcp!
    c.stack.input(c.app.seg(c.seq.app, fin.seq + 1, ACK | FIN, 65535))
    c.stack.input(c.app.seg(ISN + 100_000, 0, SYN, 64240))
    await tick()
    expect(c.calls).toHaveLength(2)
    expect(c.take().at(-1)!.tcp).toMatchObject({ flags: SYN | ACK, ack: ISN + 100_001 })
  })

  it('an RST from the app destroys the channel with an error', async () => {
    const c = await connect()
    const errors: Error[] = []
    c.ch.on('error', (e) => errors.push(e))
    c.stack.input(c.app.seg(c.seq.app, 0, RST, 0))
    await tick()
    expect(c.ch.destroyed).toBe(true)
    expect(errors[0]?.message).toMatch(/reset by the application/)
    expect(c.stack.stats().tcpActive).toBe(0)
  })

  it('a channel that closes without EOF resets the app', async () => {
    const c = await connect()
    c.ch.destroy()
    await tick()
    expect(c.take().map((p) => p.tcp!.flags)).toEqual([RST | ACK])
  })

  it('close() resets every flow', async () => {
    const c = await connect()
    c.stack.close()
    expect(c.take().map((p) => p.tcp!.flags)).toEqual([RST | ACK])
    await tick()
    expect(c.ch.destroyed).toBe(true)
  })
})
