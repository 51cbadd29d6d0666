/**
 * In-memory stand-ins for the fuzz tests of the proxy front-ends. A real TCP socket cannot
 * deliver a chosen chunking (the kernel coalesces and splits at will), so FakeSocket plays the
 * accepted client socket: the test pushes exactly the chunks it wants the server to see, one
 * event-loop turn apart. FakeRemote plays the stream a Dialer returns (the SSH channel).
 */
import type net from 'node:net'
import { Duplex } from 'node:stream'
import { DialError } from '../../src/router/dial-error'
import { FakeDialer } from '../fakes/fake-dialer'

/** The subset of net.Socket the front-ends use, over an in-memory Duplex. */
export class FakeSocket extends Duplex {
  readonly remoteAddress = '127.0.0.1'
  readonly remotePort = 40000
  readonly written: Buffer[] = []

  constructor() {
    super({ allowHalfOpen: true })
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.written.push(Buffer.from(chunk))
    cb()
  }

  setNoDelay(): this {
    return this
  }

  /** Records the timeout; never fires it (the fuzz runs must not wait seconds). */
  setTimeout(_ms: number, _cb?: () => void): this {
    return this
  }

  resetAndDestroy(): this {
    this.destroy()
    return this
  }

  /** Everything the server wrote to the client. */
  get output(): Buffer {
    return Buffer.concat(this.written)
  }

  asSocket(): net.Socket {
    return this as unknown as net.Socket
  }
}

/** A dialled stream: records what the proxy sends; `respond` may answer based on it. */
export class FakeRemote extends Duplex {
  readonly received: Buffer[] = []

  constructor(private readonly respond?: (received: Buffer, remote: FakeRemote) => void) {
    super({ allowHalfOpen: true })
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.received.push(Buffer.from(chunk))
    this.respond?.(Buffer.concat(this.received), this)
    cb()
  }

  get data(): Buffer {
    return Buffer.concat(this.received)
  }
}

/**
 * A FakeDialer (test/fakes) that hands out FakeRemotes (they are its `streams`), or fails
 * as a refused open for hosts named "fail.invalid".
 */
export function remoteDialer(respond?: (received: Buffer, remote: FakeRemote) => void): FakeDialer {
  return new FakeDialer()
    .set('fail.invalid', new DialError('refused', 'connect ECONNREFUSED'))
    .otherwise(() => new FakeRemote(respond))
}

/** One event-loop turn: lets stream events and pending promise chains run. */
export const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

/** Pushes each chunk one turn apart, so the server sees exactly these boundaries. */
export async function feed(sock: FakeSocket, chunks: Buffer[], end: boolean): Promise<void> {
  for (const c of chunks) {
    if (c.length === 0) continue
    sock.push(c)
    await turn()
  }
  if (end) sock.push(null)
  for (let i = 0; i < 5; i++) await turn()
}

/** Splits buf at the given points (any values, reduced into range). */
export function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  return [...points, buf.length].map((p, i, all) => buf.subarray(i === 0 ? 0 : all[i - 1], p))
}

/** Waits (a bounded number of turns) until cond holds. */
export async function until(cond: () => boolean, turns = 50): Promise<boolean> {
  for (let i = 0; i < turns && !cond(); i++) await turn()
  return cond()
}
