import net from 'node:net'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { coalesceWrites } from '../../../src/ssh/builtin/write-coalescer'

/** A Writable that records what reaches its sink, one entry per write or writev call. */
function recorder(): { sink: Writable; calls: string[][] } {
  const calls: string[][] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      calls.push([chunk.toString()])
      cb()
    },
    writev(chunks, cb) {
      calls.push(chunks.map((c) => (c.chunk as Buffer).toString()))
      cb()
    },
  })
  return { sink, calls }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('coalesceWrites', () => {
  it('writes of one event-loop turn reach the sink as one writev, in order; the next turn is a new batch', async () => {
    const { sink, calls } = recorder()
    expect(coalesceWrites(sink)).toBe(true)
    const order: string[] = []
    const w = (s: string): void => {
      order.push(s)
      sink.write(s)
    }
    w('a')
    w('b')
    process.nextTick(() => w('c'))
    await Promise.resolve().then(() => w('d'))
    await new Promise((r) => process.nextTick(r))
    expect(calls).toEqual([]) // nothing leaves before the turn ends
    await turn()
    expect(order).toHaveLength(4)
    expect(calls).toEqual([order])
    expect(calls).toHaveLength(1)
    sink.write('e')
    await turn()
    expect(calls).toHaveLength(2)
    expect(calls[1]).toEqual(['e'])
  })

  it('end() flushes at once: nothing written before it is held back', async () => {
    const { sink, calls } = recorder()
    coalesceWrites(sink)
    sink.write('bye')
    const finished = new Promise((r) => sink.once('finish', r))
    sink.end()
    await finished
    expect(calls.flat()).toEqual(['bye'])
    await turn() // the pending flush finds nothing to do and does not throw
    expect(calls.flat()).toEqual(['bye'])
  })

  it('is installed once per stream', () => {
    const { sink } = recorder()
    expect(coalesceWrites(sink)).toBe(true)
    expect(coalesceWrites(sink)).toBe(false)
  })

  it('a real TCP socket: many small writes arrive intact and in order', async () => {
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const got = new Promise<string>((resolve) => {
      server.once('connection', (s) => {
        let text = ''
        s.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text))
      })
    })
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    await new Promise((r) => sock.once('connect', r))
    coalesceWrites(sock)
    const expected: string[] = []
    for (let t = 0; t < 20; t++) {
      for (let i = 0; i < 50; i++) {
        const piece = `${t}:${i};`
        expected.push(piece)
        sock.write(piece)
      }
      await turn()
    }
    sock.end()
    expect(await got).toBe(expected.join(''))
    server.close()
  })
})
