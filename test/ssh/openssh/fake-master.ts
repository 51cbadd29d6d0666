/**
 * A stand-in for an OpenSSH ControlMaster's control socket, for unit tests of the mux client
 * and the proxy connection: it speaks the mux hello, answers ALIVE_CHECK / OPEN_FWD / PROXY,
 * and in proxy mode hands every connection-protocol message to the test, which answers with
 * the wire helpers. Real sockets (a Unix socket in a temp directory), no mocks of Node.
 */
import * as fs from 'node:fs'
import net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { FrameSplitter, Reader, Writer } from '../../../src/ssh/openssh/wire'
import { MUX } from '../../../src/ssh/openssh/mux-messages'
import { parseConnMessage, type ConnMessage } from '../../../src/ssh/openssh/conn-messages'

/** The members of ConnMessage whose `type` admits T (some members share several types). */
export type MessageOf<T> = ConnMessage extends infer M ? (M extends { type: infer U } ? (T extends U ? M : never) : never) : never

export interface FakePeer {
  /** Messages received in proxy mode, in order. */
  readonly got: ConnMessage[]
  /** Sends raw frames to the client. */
  send(...frames: Buffer[]): void
  /** Resolves with the next message of a type (waits if needed). */
  next<T extends ConnMessage['type']>(type: T): Promise<MessageOf<T>>
  readonly socket: net.Socket
}

export interface FakeMaster {
  readonly path: string
  /** Resolves with each proxy-mode peer as a client enters proxy mode. */
  peer(): Promise<FakePeer>
  close(): Promise<void>
  /** Mux requests seen (type, body reader) on control connections. */
  readonly requests: Array<{ type: number; id: number }>
}

export interface FakeMasterOptions {
  /** Hello version (default 4). */
  version?: number
  /** Answer OPEN_FWD with this (default: REMOTE_PORT 40000). */
  onOpenFwd?: (r: Reader, id: number) => Buffer
  /** Bytes to send right after MUX_S_PROXY, in the same write. */
  afterProxy?: Buffer
}

export async function fakeMaster(opts: FakeMasterOptions = {}): Promise<FakeMaster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-fake-'))
  const sock = path.join(dir, 'ctl')
  const waiting: Array<(p: FakePeer) => void> = []
  const ready: FakePeer[] = []
  const requests: Array<{ type: number; id: number }> = []
  const conns = new Set<net.Socket>()
  const server = net.createServer((s) => {
    conns.add(s)
    s.on('close', () => conns.delete(s))
    s.on('error', () => {})
    s.write(new Writer().u32(MUX.HELLO).u32(opts.version ?? 4).frame())
    let proxy: (FakePeer & { deliver(f: Buffer): void }) | undefined
    const splitter = new FrameSplitter((f) => {
      if (proxy) return proxy.deliver(f)
      const r = new Reader(f)
      const type = r.u32()
      if (type === MUX.HELLO) return
      const id = r.u32()
      requests.push({ type, id })
      if (type === MUX.C_ALIVE_CHECK) s.write(new Writer().u32(MUX.S_ALIVE).u32(id).u32(process.pid).frame())
      else if (type === MUX.C_OPEN_FWD) s.write(opts.onOpenFwd ? opts.onOpenFwd(r, id) : new Writer().u32(MUX.S_REMOTE_PORT).u32(id).u32(40000).frame())
      else if (type === MUX.C_CLOSE_FWD) s.write(new Writer().u32(MUX.S_OK).u32(id).frame())
      else if (type === MUX.C_PROXY) {
        proxy = makePeer(s)
        s.write(Buffer.concat([new Writer().u32(MUX.S_PROXY).u32(id).frame(), opts.afterProxy ?? Buffer.alloc(0)]))
        const w = waiting.shift()
        if (w) w(proxy)
        else ready.push(proxy)
      } else s.write(new Writer().u32(MUX.S_FAILURE).u32(id).string('unsupported').frame())
    })
    s.on('data', (d: Buffer) => splitter.push(d))
  })
  await new Promise<void>((resolve) => server.listen(sock, resolve))
  return {
    path: sock,
    requests,
    peer: () => new Promise((resolve) => {
      const p = ready.shift()
      if (p) resolve(p)
      else waiting.push(resolve)
    }),
    close: async () => {
      for (const c of conns) c.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

function makePeer(socket: net.Socket): FakePeer & { deliver(f: Buffer): void } {
  const got: ConnMessage[] = []
  const consumed = new Set<number>()
  const waiters: Array<{ type: ConnMessage['type']; resolve: (m: ConnMessage) => void }> = []
  return {
    got,
    socket,
    send: (...frames) => {
      for (const f of frames) socket.write(f)
    },
    deliver(f: Buffer) {
      // A copy: the message must not be a view of a chunk the client's socket may reuse.
      const m = parseConnMessage(Buffer.from(f))
      got.push(m)
      const i = waiters.findIndex((w) => w.type === m.type)
      if (i >= 0) {
        consumed.add(got.length - 1)
        waiters.splice(i, 1)[0]!.resolve(m)
      }
    },
    next(type) {
      const i = got.findIndex((m, k) => !consumed.has(k) && m.type === type)
      if (i >= 0) {
        consumed.add(i)
        return Promise.resolve(got[i] as never)
      }
      return new Promise((resolve) => waiters.push({ type, resolve: resolve as (m: ConnMessage) => void }))
    },
  }
}
