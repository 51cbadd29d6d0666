import { execFile } from 'node:child_process'
import net from 'node:net'

/** Runs a command without blocking the event loop (our servers live in this process). */
export function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** Reads everything from a socket until the peer's FIN, a reset or close. */
export function collect(sock: net.Socket): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    sock.on('data', (d: Buffer) => chunks.push(d))
    sock.on('error', (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: e.code }))
    sock.on('close', () => resolve({ data: Buffer.concat(chunks) }))
    // Our test sockets are half-open capable: the server's FIN is the end of the data.
    sock.on('end', () => {
      resolve({ data: Buffer.concat(chunks) })
      sock.end()
    })
    sock.resume() // readBytes() may have paused it
  })
}

/** Resolves with the first `n` bytes received (or fewer if the socket closes first). */
export function readBytes(sock: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let acc = Buffer.alloc(0)
    const onData = (d: Buffer): void => {
      acc = Buffer.concat([acc, d])
      if (acc.length >= n) done()
    }
    const done = (): void => {
      sock.off('data', onData)
      sock.pause()
      // Give back what belongs to later reads.
      if (acc.length > n) sock.unshift(acc.subarray(n))
      resolve(acc.subarray(0, n))
    }
    sock.on('data', onData)
    sock.once('close', done)
  })
}

export async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, r))
  return (server.address() as net.AddressInfo).port
}

export function connect(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: true })
    s.once('connect', () => resolve(s)).once('error', reject)
  })
}

/**
 * A slowloris client: writes `bytes` one at a time, one every `everyMs`, and resolves with the
 * ms from the first byte until the server ended the connection (FIN or reset), or undefined
 * when it was still open `withinMs` after the first byte.
 */
export async function trickle(sock: net.Socket, bytes: Buffer, everyMs: number, withinMs: number): Promise<number | undefined> {
  const t0 = Date.now()
  let endedAt: number | undefined
  const end = (): void => void (endedAt ??= Date.now())
  sock.on('end', end).on('close', end).on('error', end)
  sock.resume()
  for (let i = 0; i < bytes.length && endedAt === undefined && Date.now() - t0 < withinMs; i++) {
    if (!sock.destroyed) sock.write(bytes.subarray(i, i + 1))
    await new Promise((r) => setTimeout(r, everyMs))
  }
  while (endedAt === undefined && Date.now() - t0 < withinMs) await new Promise((r) => setTimeout(r, 10))
  sock.destroy()
  return endedAt === undefined ? undefined : endedAt - t0
}
