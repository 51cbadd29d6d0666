/**
 * Pins every assumption src/ssh/builtin/ssh2-compat.ts makes about ssh2's internals against the
 * installed ssh2 (numbers as in that file). When ssh2 is upgraded, this file says which of them
 * still hold; the compat module is then the one file to audit.
 */
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import type { Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  Client,
  beforeChannelsEnd,
  channelOpenFailureCode,
  channelWindow,
  installChannelDestroy,
  NO_MORE_AUTH_METHODS,
  ssh2Constants,
  transportSocket,
} from '../../../src/ssh/builtin/ssh2-compat'
import { Server, type ClientChannel, type Connection, type ServerChannel } from 'ssh2'
import { genKey, type KeyPair } from '../helpers'

const PASSWORD = 'pw'

/** An ssh2 server whose direct-tcpip channels the test drives by hand. */
class Bastion {
  readonly server: Server
  readonly channels: ServerChannel[] = []
  readonly sockets = new Set<net.Socket>()
  mode: 'accept' | 'reject' | 'silent' = 'accept'
  port = 0
  constructor(hostKey: KeyPair) {
    this.server = new Server({ hostKeys: [hostKey.private] }, (c: Connection) => {
      c.on('error', () => {})
      c.on('authentication', (ctx) => (ctx.method === 'password' && ctx.password === PASSWORD ? ctx.accept() : ctx.reject(['password'])))
      c.on('tcpip', (accept, reject) => {
        if (this.mode === 'reject') return reject()
        if (this.mode === 'silent') return
        const ch = accept()
        ch.on('error', () => {})
        this.channels.push(ch)
      })
    })
    ;(this.server as unknown as { _srv: net.Server })._srv.on('connection', (s: net.Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()))
    this.port = (this.server.address() as net.AddressInfo).port
  }
  /** A network outage: every client connection cut. */
  cut(): void {
    for (const s of this.sockets) s.destroy()
  }
}

let bastion: Bastion

function connect(extra: Record<string, unknown> = {}): Promise<{ client: Client; sock: net.Socket }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(bastion.port, '127.0.0.1')
    const client = new Client()
    client.once('ready', () => resolve({ client, sock }))
    client.once('error', reject)
    client.connect({ sock, username: 'u', password: PASSWORD, hostVerifier: () => true, ...extra })
  })
}

function open(client: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => client.forwardOut('127.0.0.1', 1, '10.0.0.1', 80, (err, ch) => (err ? reject(err) : resolve(ch))))
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  bastion = new Bastion(genKey())
  await bastion.start()
})
afterAll(async () => {
  bastion.cut()
  await new Promise<void>((r) => bastion.server.close(() => r()))
})

describe('ssh2 internals ssh2-compat.ts relies on', () => {
  it('the installed ssh2 is the audited line (1.17.x): an upgrade must go through this file', () => {
    expect(JSON.parse(fs.readFileSync(require.resolve('ssh2/package.json'), 'utf8')).version).toMatch(/^1\.17\./)
  })

  it('1. ssh2 captures randomFillSync at load: loaded through the compat module, its padding comes from our pool (fresh process)', () => {
    const dist = path.resolve(__dirname, '../../../dist/ssh/builtin/ssh2-compat.js')
    expect(fs.existsSync(dist), 'run `npm run build` first').toBe(true)
    const script = `
      const { Client, utils, paddingPoolStats } = require(${JSON.stringify(dist)})
      const { Server } = require('ssh2')
      const srv = new Server({ hostKeys: [utils.generateKeyPairSync('ecdsa', { bits: 256 }).private] }, (c) => {
        c.on('authentication', (ctx) => ctx.accept())
        c.on('ready', () => c.end())
      })
      srv.listen(0, '127.0.0.1', () => {
        const cl = new Client()
        cl.on('ready', () => { console.log(JSON.stringify(paddingPoolStats())); cl.end(); srv.close() })
        cl.on('error', () => {})
        cl.connect({ host: '127.0.0.1', port: srv.address().port, username: 'u', hostVerifier: () => true })
      })`
    const stats = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 }).trim())
    expect(stats.pooled).toBeGreaterThan(0)
  })

  it('2. lib/protocol/constants.js lists the supported ciphers and host key algorithms', () => {
    const c = ssh2Constants()!
    expect(c.SUPPORTED_CIPHER).toContain('aes128-gcm@openssh.com')
    expect(c.SUPPORTED_SERVER_HOST_KEY).toContain('ssh-ed25519')
    expect(c.DEFAULT_SERVER_HOST_KEY.length).toBeGreaterThan(0)
  })

  it('3. a channel exposes its receive window: 2 MiB credit, grant() reaches the server, data passes the hooks', async () => {
    const { client } = await connect()
    const ch = await open(client)
    const w = channelWindow(ch)!
    expect(w).toBeDefined()
    expect(w.open).toBe(true)
    expect(w.credit).toBe(2 * 1024 * 1024)
    const server = bastion.channels.at(-1)! as ServerChannel & { outgoing: { window: number } }
    const before = server.outgoing.window
    w.grant(1024 * 1024)
    expect(w.credit).toBe(3 * 1024 * 1024)
    for (let i = 0; i < 50 && server.outgoing.window === before; i++) await wait(10)
    expect(server.outgoing.window).toBe(before + 1024 * 1024) // CHANNEL_WINDOW_ADJUST to the peer's channel
    const seen: string[] = []
    w.hook({ beforePush: (c) => seen.push(`before:${c}`), afterPush: (c) => seen.push(`after:${c}`), afterRead: () => seen.push('read') })
    ch.on('data', () => seen.push('data'))
    server.write('x')
    for (let i = 0; i < 50 && !seen.includes('after:x'); i++) await wait(10)
    // Flowing: 'data' is emitted inside push(), between our two hooks; reads are hooked too.
    expect(seen.filter((e) => e !== 'read').slice(0, 3)).toEqual(['before:x', 'data', 'after:x'])
    expect(seen).toContain('read')
    expect(w.credit).toBe(3 * 1024 * 1024 - 1) // ssh2 decremented it before the push
    client.end()
  })

  it('4. Client._sock is the socket given to connect()', async () => {
    const { client, sock } = await connect()
    expect(transportSocket(client)).toBe(sock)
    client.end()
  })

  it("5. a channel's 'close' waits for its 'end': stock destroy() leaves a paused channel with data open; ours closes it", async () => {
    const { client } = await connect()
    const stock = await open(client)
    bastion.channels.at(-1)!.write('unread')
    await wait(50)
    stock.destroy() // ssh2's own: end() + close()
    let stockClosed = false
    stock.once('close', () => (stockClosed = true))
    await wait(300)
    expect(stockClosed).toBe(false)
    const ours = await open(client)
    installChannelDestroy(ours)
    bastion.channels.at(-1)!.write('unread')
    await wait(50)
    const closed = new Promise((r) => ours.once('close', r))
    ours.end()
    await new Promise((r) => setImmediate(r))
    expect(() => ours.destroy()).not.toThrow() // also once the write side has finished
    await closed
    client.end()
  })

  it("6. when the connection dies, the Client's 'close' comes before the channels' clean EOF", async () => {
    const { client } = await connect()
    const ch: Duplex = await open(client)
    const order: string[] = []
    ch.on('data', () => {})
    ch.on('end', () => order.push('channel end'))
    ch.on('error', () => {})
    beforeChannelsEnd(client, () => order.push('client close'))
    const ended = new Promise((r) => ch.once('end', r))
    bastion.cut()
    await ended
    expect(order).toEqual(['client close', 'channel end'])
  })

  it('7. an authHandler that calls back NO_MORE_AUTH_METHODS ends authentication', async () => {
    const err = await connect({ password: undefined, authHandler: (_m: unknown, _p: unknown, cb: (m: unknown) => void) => cb(NO_MORE_AUTH_METHODS) }).catch((e: Error & { level?: string }) => e)
    expect(err).toMatchObject({ level: 'client-authentication', message: expect.stringMatching(/All configured authentication methods failed/) })
  })

  it('8. a refused open carries the RFC 4254 code; a local failure (connection gone) none', async () => {
    const { client } = await connect()
    bastion.mode = 'reject'
    const refused = await open(client).catch((e: unknown) => e)
    expect([1, 2, 3, 4]).toContain(channelOpenFailureCode(refused)) // an RFC 4254 §5.1 code
    bastion.mode = 'silent'
    const pending = open(client).catch((e: unknown) => e)
    await wait(50)
    bastion.cut()
    const local = await pending
    expect(local).toBeInstanceOf(Error)
    expect(channelOpenFailureCode(local)).toBeUndefined()
    bastion.mode = 'accept'
  })
})
