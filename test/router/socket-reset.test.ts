import { readdirSync, readFileSync } from 'node:fs'
import * as net from 'node:net'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { resetSocket, shutdownMayBePending } from '../../src/router/socket-reset'

/** A connected pair of real TCP sockets: `app` is the peer, `ours` the socket we accepted. */
async function socketPair(): Promise<{ app: net.Socket; ours: net.Socket }> {
  const server = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const app = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
  const ours = await accepted
  await new Promise<void>((r) => (app.connecting ? app.once('connect', r) : r()))
  server.close()
  cleanups.push(() => {
    app.destroy()
    ours.destroy()
  })
  return { app, ours }
}

/** Resolves with how `s` ended: its 'close', or its first error; 'no close' if neither came in time. */
function outcome(s: net.Socket, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('no close'), ms)
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t)
      resolve(`error ${e.code}${e.syscall ? ` (${e.syscall})` : ''}`)
    })
    s.once('close', () => {
      clearTimeout(t)
      resolve('close')
    })
  })
}

/** Everything the peer reads until EOF, or its error. */
function received(s: net.Socket): Promise<{ data: string; end: string }> {
  return new Promise((resolve) => {
    let data = ''
    s.on('data', (d) => (data += d))
    s.once('end', () => resolve({ data, end: 'FIN' }))
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ data, end: e.code ?? 'error' }))
  })
}

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

describe('resetSocket', () => {
  it('an open socket is reset: the peer sees ECONNRESET', async () => {
    const { app, ours } = await socketPair()
    const peer = received(app)
    const done = outcome(ours)
    resetSocket(ours)
    expect(await done).toBe('close')
    expect((await peer).end).toBe('ECONNRESET')
  })

  // Node 20: resetAndDestroy() here fails with EINVAL (libuv refuses a reset while a shutdown
  // is pending) and leaks the handle — no 'close' ever, and the process cannot exit.
  it('a socket whose FIN is pending (end() just called) is closed, not leaked; the peer gets every byte and the FIN', async () => {
    const { app, ours } = await socketPair()
    const peer = received(app)
    const done = outcome(ours)
    ours.end('last words')
    expect(shutdownMayBePending(ours)).toBe(true)
    const reset = vi.spyOn(ours, 'resetAndDestroy')
    resetSocket(ours)
    expect(await done).toBe('close')
    expect(reset).not.toHaveBeenCalled()
    expect(await peer).toEqual({ data: 'last words', end: 'FIN' })
  })

  it('a socket ended with bytes still queued gets the real reset (no shutdown was requested yet)', async () => {
    const { app, ours } = await socketPair()
    app.pause() // the peer does not read: most of the 8 MiB stays queued in our process
    ours.end(Buffer.alloc(8 << 20))
    expect(ours.writableLength).toBeGreaterThan(0)
    expect(shutdownMayBePending(ours)).toBe(false)
    const reset = vi.spyOn(ours, 'resetAndDestroy')
    const done = outcome(ours)
    resetSocket(ours)
    expect(reset).toHaveBeenCalledTimes(1)
    expect(await done).toBe('close')
  })

  it('a socket whose shutdown completed is reset normally; a destroyed one is left alone', async () => {
    const { app, ours } = await socketPair()
    app.resume()
    ours.end()
    await new Promise((r) => ours.once('finish', r))
    expect(shutdownMayBePending(ours)).toBe(false)
    const done = outcome(ours)
    resetSocket(ours)
    expect(await done).toBe('close')
    expect(() => resetSocket(ours)).not.toThrow()
  })

  it('is the only way src/ resets a socket (a direct resetAndDestroy() can hang the process)', () => {
    const root = path.resolve(__dirname, '..', '..', 'src')
    const offenders: string[] = []
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name)
        if (e.isDirectory()) walk(p)
        else if (p.endsWith('.ts') && !p.endsWith(path.join('router', 'socket-reset.ts'))) {
          if (/\.resetAndDestroy\s*\(/.test(readFileSync(p, 'utf8'))) offenders.push(path.relative(root, p))
        }
      }
    }
    walk(root)
    expect(offenders, 'use resetSocket() from src/router/socket-reset.ts').toEqual([])
  })
})
