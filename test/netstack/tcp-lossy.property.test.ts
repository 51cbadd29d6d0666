import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ACK, FIN, SYN } from '../../src/netstack/tcp-wire'
import { App, FakeChannel, type Out, makeStack, synOptions, tick } from './helpers'

/**
 * A deliberately simple reference peer (the "application"): go-back-N sender, in-order-only
 * receiver, no window scaling, MSS 500. The network between it and the stack loses, duplicates
 * and reorders packets as fast-check decides; both byte streams must still arrive exactly.
 */
class RefPeer {
  readonly app = new App()
  readonly isn = 0xfffff000 // wraps around 2^32 during the test
  sndUna = 0 // offsets into `data` (SYN and FIN excluded)
  sndNxt = 0
  peerWnd = 0
  iss: number | undefined
  rcvNxt = 0
  received: Buffer[] = []
  finRcvd = false
  finAcked = false
  sends = 0
  constructor(readonly data: Buffer) {}

  syn(): Buffer {
    return this.app.seg(this.isn, 0, SYN, 65535, '', synOptions(500))
  }
  private ackNo(): number {
    return (this.iss! + 1 + this.rcvNxt + (this.finRcvd ? 1 : 0)) >>> 0
  }
  /** Segments to send now (window permitting), FIN after the data. */
  output(): Buffer[] {
    if (this.iss === undefined) return [this.syn()]
    const out: Buffer[] = []
    while (this.sndNxt < this.data.length && this.sndNxt - this.sndUna < this.peerWnd && out.length < 8) {
      // Segment sizes vary with each send, so a retransmission straddles what was received.
      this.sends++
      const n = Math.min(1 + ((this.sends * 7919) % 500), this.data.length - this.sndNxt, this.peerWnd - (this.sndNxt - this.sndUna))
      out.push(this.app.seg((this.isn + 1 + this.sndNxt) >>> 0, this.ackNo(), ACK, 65535, this.data.subarray(this.sndNxt, this.sndNxt + n)))
      this.sndNxt += n
    }
    if (this.sndNxt === this.data.length && !this.finAcked) {
      out.push(this.app.seg((this.isn + 1 + this.data.length) >>> 0, this.ackNo(), ACK | FIN, 65535))
    }
    return out
  }
  timeout(): Buffer[] {
    this.sndNxt = this.sndUna
    return this.output()
  }
  /** Handles a packet from the stack; returns the ACK it warrants. */
  input(p: Out): Buffer[] {
    const t = p.tcp!
    if (t.flags & SYN) {
      this.iss = t.seq
      this.peerWnd = t.window
      return [this.app.seg((this.isn + 1) >>> 0, (t.seq + 1) >>> 0, ACK, 65535), ...this.output()]
    }
    if (this.iss === undefined) return []
    const acked = ((t.ack - this.isn - 1) >>> 0) // offset of the stack's cumulative ACK
    if (acked <= this.data.length + 1) {
      if (acked > this.sndUna) this.sndUna = Math.min(acked, this.data.length)
      if (acked === this.data.length + 1) this.finAcked = true
      if (this.sndNxt < this.sndUna) this.sndNxt = this.sndUna
      this.peerWnd = t.window
    }
    const off = (t.seq - this.iss - 1) >>> 0
    if (off === this.rcvNxt && !this.finRcvd) {
      this.received.push(Buffer.from(t.payload))
      this.rcvNxt += t.payload.length
      if (t.flags & FIN) this.finRcvd = true
    }
    return t.payload.length > 0 || t.flags & FIN ? [this.app.seg((this.isn + 1 + this.sndNxt) >>> 0, this.ackNo(), ACK, 65535)] : []
  }
}

type Action = { k: 'toStack' | 'toPeer' | 'drop' | 'dup' | 'swap' | 'tick' | 'peerTick'; i: number }
const action = fc.record({ k: fc.constantFrom('toStack', 'toPeer', 'toStack', 'toPeer', 'drop', 'dup', 'swap', 'tick', 'peerTick'), i: fc.nat(20) }) as fc.Arbitrary<Action>

async function run(up: Buffer, down: Buffer, actions: Action[]): Promise<void> {
  const ch = new FakeChannel()
  const s = makeStack({ openTcp: async () => ch, tcp: { maxRetries: 1000 } })
  const peer = new RefPeer(up)
  const toStack: Buffer[] = [peer.syn()]
  const toPeer: Out[] = []
  let chEnded = false
  ch.on('finish', () => (chEnded = true))
  ch.push(down)
  ch.push(null)
  const pump = async (): Promise<void> => {
    await tick()
    s.clock.advance(0)
    toPeer.push(...s.take())
  }
  const step = async (a: Action, lossy: boolean): Promise<void> => {
    const q = a.i % 2 === 0 ? toStack : toPeer
    switch (lossy ? a.k : a.k === 'drop' || a.k === 'dup' || a.k === 'swap' ? 'toStack' : a.k) {
      case 'toStack':
        if (toStack.length) s.stack.input(toStack.splice(a.i % toStack.length, 1)[0])
        break
      case 'toPeer':
        if (toPeer.length) toStack.push(...peer.input(toPeer.splice(a.i % toPeer.length, 1)[0]))
        break
      case 'drop':
        if (q.length) q.splice(a.i % q.length, 1)
        break
      case 'dup':
        if (q.length) (q as unknown[]).push(q[a.i % q.length])
        break
      case 'swap':
        if (q.length > 1) (q as unknown[]).push(q.shift())
        break
      case 'tick':
        s.clock.advance(250)
        break
      case 'peerTick':
        toStack.push(...peer.timeout())
        break
    }
    await pump()
  }
  for (const a of actions) await step(a, true)
  // Then a clean network until both streams are complete (bounded).
  for (let n = 0; n < 3000 && !(peer.finRcvd && chEnded && peer.finAcked); n++) {
    while (toStack.length) s.stack.input(toStack.shift()!)
    await pump()
    while (toPeer.length) toStack.push(...peer.input(toPeer.shift()!))
    if (!toStack.length && !toPeer.length) {
      toStack.push(...peer.timeout())
      s.clock.advance(250)
      await pump()
    }
  }
  expect(Buffer.concat(peer.received).equals(down)).toBe(true)
  expect(peer.finRcvd).toBe(true)
  expect(Buffer.concat(ch.received).length).toBe(up.length)
  expect(Buffer.concat(ch.received).equals(up)).toBe(true)
  expect(chEnded).toBe(true)
}

describe('TCP over a lossy, reordering, duplicating network', () => {
  it('delivers the exact byte streams both ways', async () => {
    const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max, size: 'max' }).map((a) => Buffer.from(a))
    await fc.assert(
      fc.asyncProperty(bytes(12_000), bytes(12_000), fc.array(action, { minLength: 10, maxLength: 200, size: 'max' }), (up, down, actions) => run(up, down, actions)),
      { numRuns: 60 },
    )
  }, 120_000)
})
