/**
 * The one module that relies on ssh2's internals; everything else in builtin/ uses its public
 * API (types may come from 'ssh2' directly). package.json pins ssh2 ~1.17, and
 * test/ssh/builtin/ssh2-compat.test.ts checks every assumption below against the installed
 * ssh2, so an upgrade is this file and that test to audit:
 *
 *  1. Loading. ssh2 takes `randomFillSync` from node:crypto when its modules load and calls it
 *     for the padding of every packet; during that load only, node:crypto's export is our pooled
 *     filler (padding-pool.ts), then restored: nothing else in the process sees the change.
 *  2. What this build supports: lib/protocol/constants.js (ciphers, host key algorithms).
 *  3. Channel windows (channel-window.ts): Channel.incoming.window, outgoing.id and .state,
 *     _client._protocol.channelWindowAdjust(), and the push()/_read() a channel's data flows
 *     through (lib/Channel.js, lib/client.js CHANNEL_DATA).
 *  4. The transport socket: Client._sock (write-coalescer.ts).
 *  5. Channel.destroy() is end() + close(), and a direct-tcpip channel emits 'close' only after
 *     'end' (utils.js onCHANNEL_CLOSE).
 *  6. When the connection dies, the Client emits 'close' before ssh2 ends each channel with a
 *     clean EOF (utils.js onCHANNEL_CLOSE pushes null).
 *  7. authHandler: calling back with `false` means "no more methods".
 *  8. A refused channel open rejects with err.reason = the RFC 4254 code (a number); a local
 *     failure (the connection went away) has none.
 *  9–13: authentication and negotiation internals, in ssh2-compat-auth.ts (which imports this
 *     file, so ssh2 is always loaded here first).
 */
import crypto = require('node:crypto')
import type { Duplex, Writable } from 'node:stream'
import type { AnyAuthMethod, ClientChannel } from 'ssh2'
import { pooledRandomFill, type PaddingPoolStats } from './padding-pool'

const filler = pooledRandomFill()

/** 1. Loads ssh2 with our padding filler in place (a no-op if ssh2 was loaded already). */
function load(): typeof import('ssh2') {
  const original = crypto.randomFillSync
  crypto.randomFillSync = filler as typeof original
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('ssh2') as typeof import('ssh2')
  } finally {
    crypto.randomFillSync = original
  }
}

const ssh2 = load()

export const Client = ssh2.Client
export type Client = import('ssh2').Client
export const utils = ssh2.utils
export const BaseAgent = ssh2.BaseAgent

/** How ssh2's padding was served so far (tests; `pooled` > 0 once a packet was sent). */
export function paddingPoolStats(): PaddingPoolStats {
  return filler.stats()
}

/** 2. What this ssh2 build supports, from its internal constants module; undefined if it moved. */
export interface Ssh2Constants {
  SUPPORTED_KEX: string[]
  SUPPORTED_MAC: string[]
  SUPPORTED_CIPHER: string[]
  SUPPORTED_SERVER_HOST_KEY: string[]
  DEFAULT_SERVER_HOST_KEY: string[]
}

export function ssh2Constants(): Ssh2Constants | undefined {
  try {
    // Loaded (and cached) by ssh2 itself above, so this never loads ssh2 code outside load().
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('ssh2/lib/protocol/constants.js') as Ssh2Constants
  } catch {
    return undefined
  }
}

interface ChannelInternals {
  incoming: { window: number }
  outgoing: { id: number; state: string }
  _client: { _protocol: { channelWindowAdjust(remoteId: number, amount: number): void } }
  _read(n: number): void
  push(chunk: unknown, encoding?: BufferEncoding): boolean
}

/** 3. The receive side of one channel, as channel-window.ts drives it. */
export interface ChannelWindow {
  /** Credit the peer has left (incoming.window). */
  readonly credit: number
  /** No adjust once the channel is no longer open (ssh2's own windowAdjust guard). */
  readonly open: boolean
  /**
   * Gives the peer `amount` more credit, through the primitive ssh2's windowAdjust uses:
   * incoming.window += amount, then CHANNEL_WINDOW_ADJUST to the peer's channel number
   * (outgoing.id). Incrementing by exactly what is sent keeps ssh2's own accounting right: it
   * drops data only at incoming.window 0 and its own refill tops up to MAX_WINDOW − window.
   */
  grant(amount: number): void
  /**
   * Hooks the channel's data path: `beforePush(chunk)` ahead of each push from CHANNEL_DATA
   * (after ssh2 decremented incoming.window; in flowing mode push() emits 'data' at once),
   * `afterPush(chunk)` after it, `afterRead()` after each _read (the consumer wants more).
   */
  hook(h: { beforePush(chunk: Buffer | null): void; afterPush(chunk: Buffer | null): void; afterRead(): void }): void
}

/** The window of an open ssh2 channel, or undefined when it lacks the internals (then leave it to ssh2). */
export function channelWindow(ch: Duplex): ChannelWindow | undefined {
  const c = ch as unknown as Partial<ChannelInternals>
  const ok =
    typeof c.incoming?.window === 'number' &&
    typeof c.outgoing?.id === 'number' &&
    typeof c._client?._protocol?.channelWindowAdjust === 'function' &&
    typeof c._read === 'function' &&
    typeof c.push === 'function'
  if (!ok) return undefined
  const i = c as ChannelInternals
  return {
    get credit() {
      return i.incoming.window
    },
    get open() {
      return i.outgoing.state === 'open'
    },
    grant(amount) {
      i.incoming.window += amount
      i._client._protocol.channelWindowAdjust(i.outgoing.id, amount)
    },
    hook(h) {
      // Instance-level wraps: ours run around ssh2's own.
      const push = i.push
      i.push = function (this: ChannelInternals, chunk: unknown, encoding?: BufferEncoding): boolean {
        const data = chunk === null || chunk === undefined ? null : (chunk as Buffer)
        h.beforePush(data)
        const r = push.call(this, chunk, encoding)
        h.afterPush(data)
        return r
      }
      const read = i._read
      i._read = function (this: ChannelInternals, n: number): void {
        read.call(this, n)
        h.afterRead()
      }
    },
  }
}

/** 4. The socket ssh2 writes its packets to (Client._sock), or undefined if that moved. */
export function transportSocket(client: Client): Writable | undefined {
  const sock = (client as unknown as { _sock?: Writable })._sock
  return sock && typeof sock.write === 'function' ? sock : undefined
}

/**
 * 5. Replaces a channel's destroy(). ssh2's is end() + close(), and Writable's autoDestroy calls
 * it once both sides have ended — when the write side has already finished. end() on a finished
 * Writable builds an ERR_STREAM_ALREADY_FINISHED (stack trace included) only to drop it: 4 % of
 * the busy time at 2,000 connections/s. Same effect without it: close() alone. And ssh2 emits a
 * direct-tcpip channel's 'close' only after its 'end', which a paused stream never emits: a
 * channel whose client went away mid-stream would stay counted as open, so resume it.
 */
export function installChannelDestroy(ch: ClientChannel): void {
  ch.destroy = destroyChannel
}

function destroyChannel(this: ClientChannel): ClientChannel {
  if (!this.writableFinished) this.end()
  this.close()
  this.resume()
  return this
}

/**
 * 6. Runs `fn` when the connection is gone, before ssh2 ends each of its channels with a clean
 * EOF — so `fn` can fail them first (a truncated download must not look complete).
 */
export function beforeChannelsEnd(client: Client, fn: () => void): void {
  client.once('close', fn)
}

/** 7. What an authHandler calls back with when it has no more methods to try. */
export const NO_MORE_AUTH_METHODS = false as unknown as AnyAuthMethod

/** 8. The RFC 4254 reason code of a refused channel open; undefined for a local failure. */
export function channelOpenFailureCode(err: unknown): number | undefined {
  const reason = (err as { reason?: unknown } | undefined)?.reason
  return typeof reason === 'number' ? reason : undefined
}

/** The installed ssh2's version (for `--version`), or undefined when its package.json is unreadable. */
export function ssh2Version(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('ssh2/package.json') as { version?: string }).version
  } catch {
    return undefined
  }
}
