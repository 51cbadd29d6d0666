/**
 * SSH connection-protocol messages as they travel in proxy mode (RFC 4254 payloads, no
 * encryption, no padding): encoders of what we send, the decoder of what the master passes
 * back. Data payloads are decoded as views, not copies. Pure.
 */
import { Reader, WireError, Writer } from './wire'

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
