import type { Duplex } from 'node:stream'

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
}

/**
 * Opens a byte stream to dst through some transport (an SSH channel, a direct socket, a fake
 * in tests). Rejects with a TunnelError: CHANNEL_OPEN (with a reason) when the far side
 * refused, NOT_CONNECTED when the transport is down and did not recover in time.
 */
export interface Dialer {
  dial(dst: Destination, meta: ConnMeta): Promise<Duplex>
}
