/**
 * The mux protocol of OpenSSH's control socket (PROTOCOL.mux; MUX_C_PROXY / MUX_S_PROXY from
 * mux.c): request encoders and the reply decoder. Pure.
 */
import { Reader, Writer } from './wire'

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
