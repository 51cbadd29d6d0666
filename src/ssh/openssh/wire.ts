/**
 * Wire formats of the OpenSSH engine (pure: no I/O).
 *
 * Two framings share one socket, one after the other (PROTOCOL.mux):
 *  - the mux protocol, until MUX_S_PROXY: `uint32 length | uint32 type | body`;
 *  - proxy mode, after it: SSH connection-protocol messages, unencrypted and unpadded:
 *    `uint32 length | byte 0 (padding length) | byte type | payload` (RFC 4254 payloads).
 * Both start with a uint32 length, so one frame splitter serves both.
 */
import { TunnelError } from '../../errors'

/** Mux message types (PROTOCOL.mux §11; MUX_C_PROXY / MUX_S_PROXY from mux.c). */
export const MUX = {
  HELLO: 0x00000001,
  C_NEW_SESSION: 0x10000002,
  C_ALIVE_CHECK: 0x10000004,
  C_TERMINATE: 0x10000005,
  C_OPEN_FWD: 0x10000006,
  C_CLOSE_FWD: 0x10000007,
  C_NEW_STDIO_FWD: 0x10000008,
  C_STOP_LISTENING: 0x10000009,
  C_PROXY: 0x1000000f,
  S_OK: 0x80000001,
  S_PERMISSION_DENIED: 0x80000002,
  S_FAILURE: 0x80000003,
  S_EXIT_MESSAGE: 0x80000004,
  S_ALIVE: 0x80000005,
  S_SESSION_OPENED: 0x80000006,
  S_REMOTE_PORT: 0x80000007,
  S_TTY_ALLOC_FAIL: 0x80000008,
  S_PROXY: 0x8000000f,
} as const

/** Forward types of MUX_C_OPEN_FWD / MUX_C_CLOSE_FWD. */
export const MUX_FWD = { LOCAL: 1, REMOTE: 2, DYNAMIC: 3 } as const
/** The mux protocol version we speak (OpenSSH ≥ 5.x speaks 4). */
export const MUX_VERSION = 4
/** "listen/connect port" value meaning: the host field is a Unix socket path. */
export const MUX_FWD_UNIX_PORT = 0xfffffffe

/** SSH connection-protocol message numbers (RFC 4254 §9). */
export const MSG = {
  GLOBAL_REQUEST: 80,
  REQUEST_SUCCESS: 81,
  REQUEST_FAILURE: 82,
  CHANNEL_OPEN: 90,
  CHANNEL_OPEN_CONFIRMATION: 91,
  CHANNEL_OPEN_FAILURE: 92,
  CHANNEL_WINDOW_ADJUST: 93,
  CHANNEL_DATA: 94,
  CHANNEL_EXTENDED_DATA: 95,
  CHANNEL_EOF: 96,
  CHANNEL_CLOSE: 97,
  CHANNEL_REQUEST: 98,
  CHANNEL_SUCCESS: 99,
  CHANNEL_FAILURE: 100,
} as const

/** RFC 4254 §5.1 reason codes of CHANNEL_OPEN_FAILURE. */
export const OPEN_FAILURE = { PROHIBITED: 1, CONNECT_FAILED: 2, UNKNOWN_TYPE: 3, RESOURCE_SHORTAGE: 4 } as const

/**
 * Largest frame accepted from the master. OpenSSH's own limit for a packet is 256 KiB
 * (PACKET_MAX_SIZE); mux messages are far smaller. A bigger length means a broken stream.
 */
export const MAX_FRAME = 256 * 1024

/** A malformed frame or message: the connection it came on cannot be trusted any more. */
export class WireError extends TunnelError {
  constructor(message: string) {
    super('SSH_PROTOCOL', `openssh: ${message}`, { hint: 'the OpenSSH master sent something unexpected; run with -vv and report it' })
  }
}

/** Reads SSH wire types from a buffer; every read is bounds-checked (WireError when short). */
export class Reader {
  private off = 0
  constructor(private readonly buf: Buffer, start = 0) {
    this.off = start
  }

  get remaining(): number {
    return this.buf.length - this.off
  }

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new WireError('truncated message')
  }

  u8(): number {
    this.need(1)
    return this.buf[this.off++]!
  }

  bool(): boolean {
    return this.u8() !== 0
  }

  u32(): number {
    this.need(4)
    const v = this.buf.readUInt32BE(this.off)
    this.off += 4
    return v
  }

  /** An SSH `string` as bytes (a view, not a copy). */
  bytes(): Buffer {
    const n = this.u32()
    this.need(n)
    const b = this.buf.subarray(this.off, this.off + n)
    this.off += n
    return b
  }

  /** An SSH `string` decoded as UTF-8. */
  string(): string {
    return this.bytes().toString('utf8')
  }

  /** Whatever is left (a view). */
  rest(): Buffer {
    const b = this.buf.subarray(this.off)
    this.off = this.buf.length
    return b
  }
}

/** Builds SSH wire values; `frame()` prefixes the total length. */
export class Writer {
  private readonly parts: Buffer[] = []
  private len = 0

  private push(b: Buffer): this {
    this.parts.push(b)
    this.len += b.length
    return this
  }

  u8(v: number): this {
    return this.push(Buffer.of(v & 0xff))
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0)
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4)
    b.writeUInt32BE(v >>> 0)
    return this.push(b)
  }

  string(v: string | Buffer): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v
    return this.u32(b.length).push(b)
  }

  /** `uint32 length | contents` as one buffer. */
  frame(): Buffer {
    const head = Buffer.allocUnsafe(4)
    head.writeUInt32BE(this.len)
    return Buffer.concat([head, ...this.parts], 4 + this.len)
  }
}

/**
 * Splits a byte stream into length-prefixed frames (both framings above). Frames are handed
 * out as views into the received chunk when they fit in it, copied only when they straddle
 * chunks. A length above `max` is a broken stream: WireError.
 */
export class FrameSplitter {
  private pending: Buffer[] = []
  private pendingLen = 0
  /** Length of the frame being assembled (incl. its 4-byte prefix), or -1 until known. */
  private want = -1
  private stopped = false
  private rest: Buffer[] = []

  constructor(
    private readonly onFrame: (frame: Buffer) => void,
    private readonly max = MAX_FRAME,
  ) {}

  push(chunk: Buffer): void {
    if (this.stopped) {
      this.rest.push(chunk)
      return
    }
    let buf = chunk
    if (this.pendingLen > 0) {
      // Complete the pending frame first, copying just what it needs.
      this.pending.push(chunk)
      this.pendingLen += chunk.length
      if (this.want < 0) {
        if (this.pendingLen < 4) return
        const head = Buffer.concat(this.pending, this.pendingLen)
        this.pending = [head]
        this.want = this.lengthAt(head, 0) + 4
      }
      if (this.pendingLen < this.want) return
      const all = Buffer.concat(this.pending, this.pendingLen)
      const want = this.want
      this.pending = []
      this.pendingLen = 0
      this.want = -1
      this.onFrame(all.subarray(4, want))
      buf = all.subarray(want)
      if (this.stopped) {
        if (buf.length > 0) this.rest.push(buf)
        return
      }
    }
    let off = 0
    while (buf.length - off >= 4) {
      const total = this.lengthAt(buf, off) + 4
      if (buf.length - off < total) break
      this.onFrame(buf.subarray(off + 4, off + total))
      off += total
      if (this.stopped) {
        if (off < buf.length) this.rest.push(buf.subarray(off))
        return
      }
    }
    if (off < buf.length) {
      const rest = buf.subarray(off)
      this.pending = [rest]
      this.pendingLen = rest.length
      this.want = rest.length >= 4 ? this.lengthAt(rest, 0) + 4 : -1
    }
  }

  /**
   * Stops splitting after the frame being delivered (call it from onFrame): the bytes after
   * that frame are kept for takeRest(). The mux → proxy switch happens at such a boundary.
   */
  stop(): void {
    this.stopped = true
  }

  /** Bytes received after stop() (in order), for the next reader of the stream. */
  takeRest(): Buffer {
    const b = Buffer.concat(this.rest)
    this.rest = []
    return b
  }

  private lengthAt(b: Buffer, off: number): number {
    const n = b.readUInt32BE(off)
    if (n > this.max) throw new WireError(`frame of ${n} bytes (at most ${this.max} expected)`)
    return n
  }
}

// ---- mux messages -------------------------------------------------------------------------

/** MUX_MSG_HELLO with our version and no extensions. */
export function muxHello(): Buffer {
  return new Writer().u32(MUX.HELLO).u32(MUX_VERSION).frame()
}

/** A mux request whose body is only the request id (ALIVE_CHECK, TERMINATE, PROXY, STOP_LISTENING). */
export function muxSimple(type: number, requestId: number): Buffer {
  return new Writer().u32(type).u32(requestId).frame()
}

/** MUX_C_OPEN_FWD / MUX_C_CLOSE_FWD. Ports are uint32 (MUX_FWD_UNIX_PORT: host is a socket path). */
export function muxForward(
  type: typeof MUX.C_OPEN_FWD | typeof MUX.C_CLOSE_FWD,
  requestId: number,
  f: { kind: number; listenHost: string; listenPort: number; connectHost: string; connectPort: number },
): Buffer {
  return new Writer()
    .u32(type)
    .u32(requestId)
    .u32(f.kind)
    .string(f.listenHost)
    .u32(f.listenPort)
    .string(f.connectHost)
    .u32(f.connectPort)
    .frame()
}

/** A decoded message from the master (before proxy mode). */
export type MuxReply =
  | { type: 'hello'; version: number }
  | { type: 'ok'; requestId: number }
  | { type: 'denied' | 'failure'; requestId: number; reason: string }
  | { type: 'alive'; requestId: number; pid: number }
  | { type: 'remote-port'; requestId: number; port: number }
  | { type: 'proxy'; requestId: number }
  | { type: 'other'; code: number }

/** Decodes one mux frame (without its length prefix). */
export function parseMuxReply(frame: Buffer): MuxReply {
  const r = new Reader(frame)
  const code = r.u32()
  switch (code) {
    case MUX.HELLO:
      // Extensions (name/value pairs) may follow; none are defined and we ignore them.
      return { type: 'hello', version: r.u32() }
    case MUX.S_OK:
      return { type: 'ok', requestId: r.u32() }
    case MUX.S_PERMISSION_DENIED:
    case MUX.S_FAILURE:
      return { type: code === MUX.S_FAILURE ? 'failure' : 'denied', requestId: r.u32(), reason: r.string() }
    case MUX.S_ALIVE:
      return { type: 'alive', requestId: r.u32(), pid: r.u32() }
    case MUX.S_REMOTE_PORT:
      return { type: 'remote-port', requestId: r.u32(), port: r.u32() }
    case MUX.S_PROXY:
      return { type: 'proxy', requestId: r.u32() }
    default:
      return { type: 'other', code }
  }
}

// ---- connection-protocol messages (proxy mode) ------------------------------------------------

/** Starts a proxy-mode packet: the padding-length byte (0) and the message type. */
export function packet(type: number): Writer {
  return new Writer().u8(0).u8(type)
}

/** Length of the header `uint32 len | 0 | 94 | uint32 recipient | uint32 datalen` of CHANNEL_DATA. */
export const DATA_HEADER = 14

/** The header of a CHANNEL_DATA packet carrying `n` bytes (the data follows it on the wire). */
export function dataHeader(recipient: number, n: number): Buffer {
  const h = Buffer.allocUnsafe(DATA_HEADER)
  h.writeUInt32BE(n + 10, 0)
  h[4] = 0
  h[5] = MSG.CHANNEL_DATA
  h.writeUInt32BE(recipient, 6)
  h.writeUInt32BE(n, 10)
  return h
}

export function channelOpenDirectTcpip(
  sender: number,
  window: number,
  maxPacket: number,
  dst: { host: string; port: number },
  orig: { host: string; port: number },
): Buffer {
  return packet(MSG.CHANNEL_OPEN)
    .string('direct-tcpip')
    .u32(sender)
    .u32(window)
    .u32(maxPacket)
    .string(dst.host)
    .u32(dst.port)
    .string(orig.host)
    .u32(orig.port)
    .frame()
}

export function channelOpenSession(sender: number, window: number, maxPacket: number): Buffer {
  return packet(MSG.CHANNEL_OPEN).string('session').u32(sender).u32(window).u32(maxPacket).frame()
}

export function channelOpenConfirmation(recipient: number, sender: number, window: number, maxPacket: number): Buffer {
  return packet(MSG.CHANNEL_OPEN_CONFIRMATION).u32(recipient).u32(sender).u32(window).u32(maxPacket).frame()
}

export function channelOpenFailure(recipient: number, reason: number, description: string): Buffer {
  return packet(MSG.CHANNEL_OPEN_FAILURE).u32(recipient).u32(reason).string(description).string('').frame()
}

export function channelWindowAdjust(recipient: number, bytes: number): Buffer {
  return packet(MSG.CHANNEL_WINDOW_ADJUST).u32(recipient).u32(bytes).frame()
}

export function channelEof(recipient: number): Buffer {
  return packet(MSG.CHANNEL_EOF).u32(recipient).frame()
}

export function channelClose(recipient: number): Buffer {
  return packet(MSG.CHANNEL_CLOSE).u32(recipient).frame()
}

/** CHANNEL_REQUEST "exec" with want-reply. */
export function channelExec(recipient: number, command: string): Buffer {
  return packet(MSG.CHANNEL_REQUEST).u32(recipient).string('exec').bool(true).string(command).frame()
}

/** CHANNEL_FAILURE: our answer to a channel request we do not handle but whose sender wants a reply. */
export function channelFailure(recipient: number): Buffer {
  return packet(MSG.CHANNEL_FAILURE).u32(recipient).frame()
}

/** A decoded connection-protocol message from the master. */
export type ConnMessage =
  | { type: typeof MSG.CHANNEL_DATA; recipient: number; data: Buffer }
  | { type: typeof MSG.CHANNEL_EXTENDED_DATA; recipient: number; dataType: number; data: Buffer }
  | { type: typeof MSG.CHANNEL_WINDOW_ADJUST; recipient: number; bytes: number }
  | { type: typeof MSG.CHANNEL_EOF | typeof MSG.CHANNEL_CLOSE | typeof MSG.CHANNEL_SUCCESS | typeof MSG.CHANNEL_FAILURE; recipient: number }
  | { type: typeof MSG.CHANNEL_OPEN_CONFIRMATION; recipient: number; sender: number; window: number; maxPacket: number }
  | { type: typeof MSG.CHANNEL_OPEN_FAILURE; recipient: number; reason: number; description: string }
  | { type: typeof MSG.CHANNEL_REQUEST; recipient: number; request: string; wantReply: boolean; data: Reader }
  | { type: typeof MSG.CHANNEL_OPEN; channelType: string; sender: number; window: number; maxPacket: number; data: Reader }
  | { type: typeof MSG.GLOBAL_REQUEST; request: string; wantReply: boolean }
  | { type: typeof MSG.REQUEST_SUCCESS | typeof MSG.REQUEST_FAILURE }
  | { type: 'other'; code: number }

/** Decodes one proxy-mode frame (without its length prefix). Views, not copies, for data. */
export function parseConnMessage(frame: Buffer): ConnMessage {
  if (frame.length < 2) throw new WireError('empty packet')
  if (frame[0] !== 0) throw new WireError(`packet with padding ${frame[0]} in proxy mode`)
  const type = frame[1]!
  const r = new Reader(frame, 2)
  switch (type) {
    case MSG.CHANNEL_DATA:
      return { type, recipient: r.u32(), data: r.bytes() }
    case MSG.CHANNEL_EXTENDED_DATA:
      return { type, recipient: r.u32(), dataType: r.u32(), data: r.bytes() }
    case MSG.CHANNEL_WINDOW_ADJUST:
      return { type, recipient: r.u32(), bytes: r.u32() }
    case MSG.CHANNEL_EOF:
    case MSG.CHANNEL_CLOSE:
    case MSG.CHANNEL_SUCCESS:
    case MSG.CHANNEL_FAILURE:
      return { type, recipient: r.u32() }
    case MSG.CHANNEL_OPEN_CONFIRMATION:
      return { type, recipient: r.u32(), sender: r.u32(), window: r.u32(), maxPacket: r.u32() }
    case MSG.CHANNEL_OPEN_FAILURE: {
      const recipient = r.u32()
      const reason = r.u32()
      // The description is required by RFC 4254; tolerate its absence (older or odd servers).
      const description = r.remaining >= 4 ? r.string() : ''
      return { type, recipient, reason, description }
    }
    case MSG.CHANNEL_REQUEST:
      return { type, recipient: r.u32(), request: r.string(), wantReply: r.bool(), data: r }
    case MSG.CHANNEL_OPEN:
      return { type, channelType: r.string(), sender: r.u32(), window: r.u32(), maxPacket: r.u32(), data: r }
    case MSG.GLOBAL_REQUEST:
      return { type, request: r.string(), wantReply: r.bool() }
    case MSG.REQUEST_SUCCESS:
    case MSG.REQUEST_FAILURE:
      return { type }
    default:
      return { type: 'other', code: type }
  }
}
