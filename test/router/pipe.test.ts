import * as net from 'node:net'
import { Duplex } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { pipeBoth } from '../../src/router/pipe'

/** A connected pair of real TCP sockets: `app` is the application, `client` what we accepted. */
async function socketPair(): Promise<{ app: net.Socket; client: net.Socket; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const app = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const client = await accepted
  await new Promise<void>((r) => (app.connecting ? app.once('connect', r) : r()))
  return {
    app,
    client,
    close: () => {
      app.destroy()
      client.destroy()
      server.close()
    },
  }
}

/** A stand-in for an SSH channel: what is written to it is recorded; push() feeds the client. */
function fakeRemote(): Duplex & { written: Buffer[]; finished: boolean } {
  const written: Buffer[] = []
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk)
      cb()
    },
    final(cb) {
      ;(d as unknown as { finished: boolean }).finished = true
      cb()
    },
  }) as Duplex & { written: Buffer[]; finished: boolean }
  d.written = written
  d.finished = false
  return d
}

function readUntil(s: net.Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = []
    let n = 0
    const on = (b: Buffer): void => {
      parts.push(b)
      n += b.length
      if (n >= bytes) {
        s.off('data', on)
        resolve(Buffer.concat(parts))
      }
    }
    s.on('data', on)
  })
}

let cleanup: (() => void) | undefined
afterEach(() => {
  cleanup?.()
  cleanup = undefined
})

describe('pipeBoth', () => {
  it('moves bytes both ways and counts them; a client FIN ends the remote while the other direction stays open', async () => {
    const { app, client, close } = await socketPair()
    cleanup = close
    const remote = fakeRemote()
    const counters = { bytesUp: 0, bytesDown: 0 }
    const done = pipeBoth(client, remote, counters)
    app.end('request')
    await new Promise((r) => setTimeout(r, 50))
    expect(Buffer.concat(remote.written).toString()).toBe('request')
    expect(remote.finished).toBe(true)
    // Half-closed by the app; the response still arrives.
    const got = readUntil(app, 8)
    remote.push('response')
    expect((await got).toString()).toBe('response')
    remote.push(null)
    const result = await done
    expect(result).toEqual({ bytesUp: 7, bytesDown: 8, error: undefined })
    expect(counters).toEqual({ bytesUp: 7, bytesDown: 8 })
  })

  for (const [what, cause, reported] of [
    ['an error on the remote', new Error('channel failed'), 'channel failed'],
    ['a remote that closes without EOF', undefined, 'remote closed without EOF'],
  ] as const) {
    it(`${what} resets the client (ECONNRESET, not a clean EOF) and reports why`, async () => {
      const { app, client, close } = await socketPair()
      cleanup = close
      const remote = fakeRemote()
      const done = pipeBoth(client, remote)
      const appErr = new Promise<NodeJS.ErrnoException>((r) => app.once('error', r))
      remote.destroy(cause)
      expect((await appErr).code).toBe('ECONNRESET')
      expect((await done).error?.message).toBe(reported)
    })
  }

  // The remote ends, so the client's FIN is pending (end() → libuv shutdown request), and then
  // fails. Node 20's resetAndDestroy() would fail with EINVAL there and leak the socket: no
  // 'close', the pipe never settles, and the process cannot exit.
  it('a remote error just after its EOF (client FIN pending) still closes the client and settles', async () => {
    const { app, client, close } = await socketPair()
    cleanup = close
    const remote = fakeRemote()
    const done = pipeBoth(client, remote)
    const appEnd = new Promise<string>((r) => {
      let data = ''
      app.on('data', (d) => (data += d))
      app.once('end', () => r(`${data} + FIN`))
      app.once('error', (e: NodeJS.ErrnoException) => r(`${data} + ${e.code}`))
    })
    remote.once('end', () => remote.destroy(new Error('transport lost'))) // runs after pipeBoth's 'end'
    remote.push('all of it')
    remote.push(null)
    const settled = await Promise.race([done, new Promise((r) => setTimeout(() => r('never settled'), 2000))])
    expect(settled).toMatchObject({ error: new Error('transport lost') })
    expect(client.destroyed).toBe(true)
    // The remote had finished: every byte and the FIN reach the application.
    expect(await appEnd).toBe('all of it + FIN')
  })

  it('a remote that failed between the dial and the pipe (already destroyed): the client is reset at once', async () => {
    const { app, client, close } = await socketPair()
    cleanup = close
    const remote = fakeRemote()
    remote.on('error', () => {})
    remote.destroy(new Error('channel closed by the server'))
    await new Promise((r) => setImmediate(r)) // its 'close' has been emitted before anyone listened
    const appSaw = new Promise<string>((r) => {
      app.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'))
      app.once('end', () => r('FIN'))
    })
    const done = pipeBoth(client, remote)
    const settled = await Promise.race([done, new Promise((r) => setTimeout(() => r('never settled'), 2000))])
    expect(settled).toMatchObject({ bytesUp: 0, bytesDown: 0, error: new Error('channel closed by the server') })
    expect(await appSaw).toBe('ECONNRESET')
  })

})
