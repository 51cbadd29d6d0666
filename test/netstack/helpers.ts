import { Duplex } from 'node:stream'
import { type IpPacket, parseAddress, parseIp } from '../../src/netstack/ip'
import { NetStack, type StackOptions, type Timers } from '../../src/netstack/stack'
import { FlowAddr, type TcpSegment, buildTcp, parseTcp, payloadOffset, sealTcp } from '../../src/netstack/tcp-wire'

/** A manual clock: timers run only when the test advances time. */
export class FakeClock implements Timers {
  t = 0
  private seq = 0
  private readonly pending = new Map<number, { at: number; fn: () => void }>()
  set(fn: () => void, ms: number): unknown {
    const id = ++this.seq
    this.pending.set(id, { at: this.t + Math.max(0, ms), fn })
    return id
  }
  clear(h: unknown): void {
    this.pending.delete(h as number)
  }
  now(): number {
    return this.t
  }
  /** Runs every timer due within ms (in due order), moving the clock as it goes. */
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined
      for (const e of this.pending) if (e[1].at <= end && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[0] < next[0]))) next = e
      if (!next) break
      this.pending.delete(next[0])
      this.t = Math.max(this.t, next[1].at)
      next[1].fn()
    }
    this.t = end
  }
  get size(): number {
    return this.pending.size
  }
}

/** A Duplex standing in for the SSH channel: records what the stack writes; the test pushes. */
export class FakeChannel extends Duplex {
  received: Buffer[] = []
  /** When true, writes are held (the channel's window is closed) until release(). */
  hold = false
  private held: (() => void)[] = []
  constructor(highWaterMark = 16 * 1024) {
    super({ writableHighWaterMark: highWaterMark, allowHalfOpen: true })
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.received.push(chunk)
    if (this.hold) this.held.push(() => cb())
    else cb()
  }
  release(): void {
    this.hold = false
    for (const cb of this.held.splice(0)) cb()
  }
  text(): string {
    return Buffer.concat(this.received).toString()
  }
}

/** Lets stream events (nextTick / microtasks) run. */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

export interface Out {
  ip: IpPacket
  tcp?: TcpSegment
}

/** The application's side of one TCP flow: builds its packets, reads what the stack sent. */
export class App {
  readonly addr: FlowAddr
  constructor(
    readonly family: 4 | 6 = 4,
    readonly port = 40000,
    dst = family === 4 ? '10.1.2.3' : 'fd00:1::3',
    dport = 80,
    src = family === 4 ? '10.0.0.2' : 'fd00::2',
  ) {
    this.addr = new FlowAddr(family, parseAddress(src), parseAddress(dst), port, dport)
  }
  /** A TCP packet from the app; options as raw bytes. */
  seg(seq: number, ack: number, flags: number, window = 65535, data: Buffer | string = '', options?: Buffer): Buffer {
    const d = typeof data === 'string' ? Buffer.from(data) : data
    const p = buildTcp(this.addr, seq, ack, flags, window, options, d.length)
    d.copy(p, payloadOffset(this.addr, options))
    return sealTcp(this.addr, p)
  }
}

/** MSS 1460 and window scale `ws` (Linux order, without SACK/timestamps). */
export function synOptions(mss = 1460, ws?: number): Buffer {
  const o = [2, 4, mss >> 8, mss & 0xff]
  if (ws !== undefined) o.push(1, 3, 3, ws)
  return Buffer.from(o)
}

export function parseOut(p: Buffer): Out {
  const ip = parseIp(p)
  if (typeof ip === 'string') throw new Error(`stack sent a bad packet: ${ip}`)
  return { ip, tcp: ip.proto === 6 ? parseTcp(ip) : undefined }
}

/** A stack with a fake clock that records every packet it sends. */
export function makeStack(over: Partial<StackOptions> = {}): { stack: NetStack; clock: FakeClock; out: Out[]; take(): Out[] } {
  const clock = new FakeClock()
  const out: Out[] = []
  const stack = new NetStack({
    send: (p) => out.push(parseOut(p)),
    openTcp: () => Promise.reject(new Error('no openTcp in this test')),
    timers: clock,
    ...over,
  })
  return { stack, clock, out, take: () => out.splice(0) }
}
