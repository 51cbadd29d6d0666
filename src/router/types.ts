import type { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { RouteEntry } from './route-table'

/** Where a connection wants to go: an IP literal (transparent capture) or a name (proxies). */
export interface Destination {
  readonly host: string
  readonly port: number
}

/** Which front-end accepted a connection. */
export type FrontEnd = 'transparent' | 'socks5' | 'http' | 'forward' | 'dns'

/** What is known about a connection when it is dialled; used for logs, audit and the SSH open. */
export interface ConnMeta {
  /** Process-wide connection number, for log correlation. */
  readonly id: number
  readonly frontEnd: FrontEnd
  /** The local client's address as seen by our listener. */
  readonly srcAddress: string
  readonly srcPort: number
  /**
   * The route table's answer for the destination, when the relay already asked it (the
   * longest-prefix entry, or null for none): the dialer uses it instead of asking again.
   */
  readonly route?: RouteEntry | null
}

/**
 * Opens a byte stream to dst through some transport (an SSH channel, a direct socket, a fake
 * in tests). Rejects with a DialError (dial-error.ts) that says why.
 */
export interface Dialer {
  dial(dst: Destination, meta: ConnMeta): Promise<Duplex>
}

/** What the far side is asked to listen on for `-R` (bindHost as parsed by forward-spec). */
export interface RemoteListenSpec {
  readonly bindHost: string
  readonly bindPort: number
  /** For messages ("-R 8080:localhost:80"). */
  readonly name: string
}

/**
 * A listener on the far side (`-R`), kept by its transport: re-requested after every reconnect
 * until stop(). Emits 'bound' (port) on every successful request.
 */
export interface RemoteListener extends EventEmitter {
  /** The port the far side listens on (the allocated one for port 0); 0 before the first grant. */
  readonly port: number
  /** Asks the far side to listen; resolves with its port, rejects with a TunnelError saying why not. */
  start(): Promise<number>
  stop(): Promise<void>
}

/**
 * A connection the far side forwarded to us. srcAddress and srcPort are undefined when the
 * transport cannot know them. accept() or reject() exactly once.
 */
export interface IncomingConnection {
  readonly srcAddress?: string
  readonly srcPort?: number
  accept(): Duplex
  reject(): void
}

/** A transport that can ask the far side to listen for us (an SSH connection). */
export interface RemoteListenHost {
  listenRemote(spec: RemoteListenSpec, onConnection: (c: IncomingConnection) => void): RemoteListener
}
