/**
 * The connection layer we speak over a master's proxy-mode socket, against a fake master
 * (real Unix socket): windows and packet sizes both ways, exact half-close, refusals with
 * their RFC 4254 reasons, CLOSE without EOF as a failure, late confirmations, connection loss.
 */
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/observe/logger'
import { MuxClient } from '../../../src/ssh/openssh/mux-client'
import { OpenRefused, OpenTimeout, ProxyConnection } from '../../../src/ssh/openssh/proxy-connection'
import { BASE_WINDOW, WindowBudget } from '../../../src/ssh/openssh/receive-window'
import { Writer } from '../../../src/ssh/openssh/wire'
import { MSG, channelClose, channelEof, channelOpenConfirmation, channelOpenFailure, channelWindowAdjust, dataHeader } from '../../../src/ssh/openssh/conn-messages'
import { type FakeMaster, type FakePeer, fakeMaster } from './fake-master'

let master: FakeMaster | undefined
afterEach(async () => {
  await master?.close()
  master = undefined
})

async function connect(opts: Parameters<typeof fakeMaster>[0] = {}): Promise<{ conn: ProxyConnection; peer: FakePeer }> {
  master = await fakeMaster(opts)
  const mux = await MuxClient.connect(master.path)
  const peerP = master.peer()
  const { socket, leftover } = await mux.proxy()
  const conn = new ProxyConnection(socket, new WindowBudget(), silentLogger)
  conn.feed(leftover)
  return { conn, peer: await peerP }
}

const data = (recipient: number, b: Buffer): Buffer => Buffer.concat([dataHeader(recipient, b.length), b])
const dst = { host: '10.0.0.1', port: 80 }
const orig = { host: '127.0.0.1', port: 5000 }

/** Opens a channel the peer confirms with its id 100 + ours, a window and a max packet. */
async function openConfirmed(conn: ProxyConnection, peer: FakePeer, window: number, maxPacket: number) {
  const opening = conn.openDirectTcpip(dst, orig, 2000)
  const open = await peer.next(MSG.CHANNEL_OPEN)
  peer.send(channelOpenConfirmation(open.sender, 100 + open.sender, window, maxPacket))
  return { ch: await opening, ours: open.sender, theirs: 100 + open.sender }
}

describe('ProxyConnection', () => {
  it('sends CHANNEL_OPEN direct-tcpip with our window, max packet, target and originator', async () => {
    const { conn, peer } = await connect()
    conn.openDirectTcpip(dst, orig, 2000).catch(() => {})
    const open = await peer.next(MSG.CHANNEL_OPEN)
    expect(open.channelType).toBe('direct-tcpip')
    expect(open.window).toBe(BASE_WINDOW)
    expect(open.maxPacket).toBe(32 * 1024)
    expect([open.data.string(), open.data.u32(), open.data.string(), open.data.u32()]).toEqual(['10.0.0.1', 80, '127.0.0.1', 5000])
    conn.close()
  })

  it('never sends beyond the peer window or its max packet; the write waits for WINDOW_ADJUST', async () => {
    const { conn, peer } = await connect()
    const { ch, theirs } = await openConfirmed(conn, peer, 100, 40)
    let written = false
    ch.write(Buffer.alloc(250, 7), () => (written = true))
    await new Promise((r) => setTimeout(r, 50))
    const sent = () => peer.got.filter((m) => m.type === MSG.CHANNEL_DATA) as Array<{ recipient: number; data: Buffer }>
    expect(sent().map((m) => m.data.length)).toEqual([40, 40, 20])
    expect(sent().every((m) => m.recipient === theirs)).toBe(true)
    expect(written).toBe(false)
    peer.send(channelWindowAdjust(0, 1000))
    await new Promise((r) => setTimeout(r, 50))
    expect(sent().reduce((n, m) => n + m.data.length, 0)).toBe(250)
    expect(Math.max(...sent().map((m) => m.data.length))).toBeLessThanOrEqual(40)
    expect(written).toBe(true)
    conn.close()
  })

  it('half-close: end() sends EOF after the data, and data still flows the other way until the peer EOF', async () => {
    const { conn, peer } = await connect()
    const { ch, ours, theirs } = await openConfirmed(conn, peer, 1 << 20, 32768)
    ch.end(Buffer.from('request'))
    const d = await peer.next(MSG.CHANNEL_DATA)
    const eof = await peer.next(MSG.CHANNEL_EOF)
    expect(d.data.toString()).toBe('request')
    expect(eof.recipient).toBe(theirs)
    expect(peer.got.findIndex((m) => m.type === MSG.CHANNEL_DATA)).toBeLessThan(peer.got.findIndex((m) => m.type === MSG.CHANNEL_EOF))
    const chunks: Buffer[] = []
    ch.on('data', (b: Buffer) => chunks.push(b))
    const ended = new Promise((r) => ch.once('end', r))
    peer.send(data(ours, Buffer.from('response, ')), data(ours, Buffer.from('after our EOF')), channelEof(ours))
    await ended
    expect(Buffer.concat(chunks).toString()).toBe('response, after our EOF')
    // Both directions done: we CLOSE; the peer's CLOSE releases the channel.
    const close = await peer.next(MSG.CHANNEL_CLOSE)
    expect(close.recipient).toBe(theirs)
    const closed = new Promise((r) => ch.once('close', r))
    peer.send(channelClose(ours))
    await closed
    expect(conn.stats).toEqual({ channelsOpen: 0, channelsTotal: 1, halfMade: 0 })
    conn.close()
  })

  it('a CLOSE without EOF fails the channel (whoever pipes it resets its client)', async () => {
    const { conn, peer } = await connect()
    const { ch, ours } = await openConfirmed(conn, peer, 1 << 20, 32768)
    ch.resume()
    const err = new Promise<Error>((r) => ch.once('error', r))
    peer.send(data(ours, Buffer.from('partial')), channelClose(ours))
    expect((await err).message).toMatch(/without EOF/)
    // We answer the CLOSE (RFC 4254 §5.3).
    expect((await peer.next(MSG.CHANNEL_CLOSE)).recipient).toBe(100 + ours)
    conn.close()
  })

  it('data beyond the credit we granted is a protocol error, not buffered', async () => {
    const { conn, peer } = await connect()
    const { ch, ours } = await openConfirmed(conn, peer, 1 << 20, 32768)
    ch.pause() // nothing consumed: no new credit
    const err = new Promise<Error & { code?: string }>((r) => ch.once('error', r))
    const chunk = Buffer.alloc(32768)
    const frames: Buffer[] = []
    // A paused stream still asks for its high-water mark (256 KiB) once, and a read grants what
    // it would take: the most a peer may send is the window plus that.
    for (let sent = 0; sent <= BASE_WINDOW + 256 * 1024; sent += chunk.length) frames.push(data(ours, chunk))
    peer.send(...frames)
    const e = await err
    expect(e.code).toBe('SSH_PROTOCOL')
    conn.close()
  })

  it('grants credit as the consumer reads: a peer that only sends what it may can move far more than one window', async () => {
    const { conn, peer } = await connect()
    const { ch, ours } = await openConfirmed(conn, peer, 1 << 20, 32768)
    let credit = BASE_WINDOW
    let received = 0
    const total = 8 * BASE_WINDOW
    let sent = 0
    const pump = (): void => {
      while (credit >= 32768 && sent < total) {
        peer.send(data(ours, Buffer.alloc(32768, 1)))
        credit -= 32768
        sent += 32768
      }
      if (sent >= total) peer.send(channelEof(ours))
    }
    peer.socket.on('data', () => {
      for (const m of peer.got.splice(0)) if (m.type === MSG.CHANNEL_WINDOW_ADJUST) credit += m.bytes
      pump()
    })
    const done = new Promise((r) => ch.once('end', r))
    ch.on('data', (b: Buffer) => (received += b.length))
    pump()
    await done
    expect(received).toBe(total)
    conn.close()
  })

  it('a consumer that pauses (backpressure) never stalls the channel: every read leaves the peer some credit', async () => {
    // Regression: Readable calls _read() before it dequeues, then not again until a push. A grant
    // computed against the not-yet-dequeued buffer was 0 when the peer had no credit left:
    // no data, no push, no _read — the channel stalled forever with an empty buffer.
    const { conn, peer } = await connect()
    const { ch, ours } = await openConfirmed(conn, peer, 1 << 20, 32768)
    let credit = BASE_WINDOW
    let sent = 0
    const total = 12 * BASE_WINDOW
    const pump = (): void => {
      while (credit >= 32768 && sent < total) {
        peer.send(data(ours, Buffer.alloc(32768, 2)))
        credit -= 32768
        sent += 32768
      }
      if (sent >= total) peer.send(channelEof(ours))
    }
    peer.socket.on('data', () => {
      for (const m of peer.got.splice(0)) if (m.type === MSG.CHANNEL_WINDOW_ADJUST) credit += m.bytes
      pump()
    })
    let received = 0
    // A slow consumer with a small buffer: pipe() pauses the channel again and again.
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _e, cb) {
        received += chunk.length
        setImmediate(cb)
      },
    })
    const done = new Promise((r) => slow.once('finish', r))
    ch.pipe(slow)
    pump()
    await done
    expect(received).toBe(total)
    conn.close()
  }, 20_000)

  it('a refused open rejects with the RFC 4254 reason and the server text', async () => {
    const { conn, peer } = await connect()
    const opening = conn.openDirectTcpip(dst, orig, 2000)
    const open = await peer.next(MSG.CHANNEL_OPEN)
    peer.send(channelOpenFailure(open.sender, 2, 'Connection refused'))
    const e = await opening.catch((x: unknown) => x)
    expect(e).toBeInstanceOf(OpenRefused)
    expect(e).toMatchObject({ reasonCode: 2, description: 'Connection refused' })
    // OpenSSH keeps a half-made proxy channel for it: counted, so a reused master is not killed.
    expect(conn.stats.halfMade).toBe(1)
    conn.close()
  })

  it('an open that times out, then is confirmed, is closed at once and never handed out', async () => {
    const { conn, peer } = await connect()
    const e = await conn.openDirectTcpip(dst, orig, 50).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(OpenTimeout)
    const open = await peer.next(MSG.CHANNEL_OPEN)
    peer.send(channelOpenConfirmation(open.sender, 555, 1000, 1000))
    expect((await peer.next(MSG.CHANNEL_CLOSE)).recipient).toBe(555)
    conn.close()
  })

  it('connection loss rejects pending opens and fails open channels', async () => {
    const { conn, peer } = await connect()
    const { ch } = await openConfirmed(conn, peer, 1000, 1000)
    const err = new Promise<Error>((r) => ch.once('error', r))
    const pending = conn.openDirectTcpip(dst, orig, 5000)
    await peer.next(MSG.CHANNEL_OPEN)
    peer.socket.destroy()
    await expect(pending).rejects.toMatchObject({ code: 'SSH_CONNECT' })
    expect((await err).message).toMatch(/closed/)
    expect(conn.isClosed).toBe(true)
  })

  it('a confirmation for a channel we never opened breaks the connection (typed error)', async () => {
    const { conn, peer } = await connect()
    const closed = new Promise<Error | undefined>((r) => conn.once('close', r))
    peer.send(channelOpenConfirmation(999, 1, 1, 1))
    expect((await closed)?.message).toMatch(/did not open/)
  })

  it('bytes the master sent right after MUX_S_PROXY are not lost', async () => {
    // An unsolicited (bogus) message in the same write as MUX_S_PROXY: it must reach the
    // connection layer, which reacts to it (here: by failing on the unknown channel).
    const bogus = new Writer().u8(0).u8(MSG.CHANNEL_OPEN_CONFIRMATION).u32(42).u32(1).u32(1).u32(1).frame()
    const { conn } = await connect({ afterProxy: bogus })
    const closed = await new Promise<Error | undefined>((r) => (conn.isClosed ? r(undefined) : conn.once('close', r)))
    expect(conn.isClosed).toBe(true)
    void closed
  })
})

describe('MuxClient', () => {
  it('refuses a master that speaks another mux version', async () => {
    master = await fakeMaster({ version: 3 })
    await expect(MuxClient.connect(master.path)).rejects.toMatchObject({ code: 'SSH_CONNECT', message: /protocol 3/ })
  })

  it('alive check, remote forward (server-picked port) and its cancellation', async () => {
    master = await fakeMaster()
    const mux = await MuxClient.connect(master.path)
    expect(await mux.alive()).toBe(process.pid)
    const f = { listenHost: 'localhost', listenPort: 0, connectPath: '/x/y' }
    expect(await mux.openRemoteForward(f)).toBe(40000)
    await mux.closeRemoteForward(f, 40000)
    mux.close()
  })

  it('a refused remote forward carries the master text', async () => {
    master = await fakeMaster({ onOpenFwd: (_r, id) => new Writer().u32(0x80000003).u32(id).string('remote port forwarding failed for listen port 22').frame() })
    const mux = await MuxClient.connect(master.path)
    await expect(mux.openRemoteForward({ listenHost: '', listenPort: 22, connectPath: '/x' })).rejects.toThrow(/listen port 22/)
    mux.close()
  })

  it('a socket that never says hello fails within the deadline', async () => {
    const net = await import('node:net')
    const fs = await import('node:fs')
    const os = await import('node:os')
    const path = await import('node:path')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-mute-'))
    const p = path.join(dir, 's')
    const server = net.createServer(() => {})
    await new Promise<void>((r) => server.listen(p, r))
    try {
      await expect(MuxClient.connect(p, 100)).rejects.toThrow(/no hello/)
    } finally {
      server.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
