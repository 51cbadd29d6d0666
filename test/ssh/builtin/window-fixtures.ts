import * as crypto from 'node:crypto'
import * as net from 'node:net'

/**
 * A TCP relay that delays every chunk by `delayMs` in each direction (so RTT ≈ 2 × delayMs):
 * the kernel here has no netem. Chunks keep their order because equal-delay timers fire in
 * insertion order. No backpressure: tests bound the volume.
 */
export async function delayRelay(targetPort: number, delayMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>()
  const forward = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (d: Buffer) => setTimeout(() => to.writable && to.write(d), delayMs))
    from.on('end', () => setTimeout(() => to.end(), delayMs))
    from.on('error', () => to.destroy())
    from.on('close', () => setTimeout(() => to.destroy(), delayMs + 1))
  }
  const server = net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true })
    a.setNoDelay(true)
    b.setNoDelay(true)
    for (const s of [a, b]) {
      socks.add(s)
      s.on('close', () => socks.delete(s))
    }
    forward(a, b)
    forward(b, a)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy()
        server.close(() => r())
      }),
  }
}

/** Deterministic pseudo-random bytes, so both ends can compute the digest. */
export function payload(bytes: number, seed = 1): Buffer {
  const out = Buffer.alloc(bytes)
  let block = crypto.createHash('sha256').update(`seed${seed}`).digest()
  for (let p = 0; p < bytes; p += block.length) {
    block.copy(out, p)
    block = crypto.createHash('sha256').update(block).digest()
  }
  return out
}

/** A TCP server that sends `data` to each client (honouring backpressure), then ends. */
export async function sourceServer(data: Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>()
  const server = net.createServer((s) => {
    socks.add(s)
    s.on('close', () => socks.delete(s))
    s.on('error', () => {})
    s.end(data)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy()
        server.close(() => r())
      }),
  }
}
