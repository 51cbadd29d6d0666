/**
 * Types and tunables shared by the flows of a stack (tcp-output.ts, tcp-conn.ts) and the
 * stack that hosts them (stack.ts).
 */

/** Injected clock and timers (tests use a fake). */
export interface Timers {
  set(fn: () => void, ms: number): unknown
  clear(handle: unknown): void
  now(): number
}

/** Tunables shared by all flows of a stack. */
export interface TcpConfig {
  /** Our receive buffer per flow: the most we advertise and hold (bytes). */
  readonly rcvBuf: number
  /** Most bytes read ahead from the Duplex beyond the peer's window. */
  readonly sndBufMax: number
  readonly minRto: number
  readonly maxRto: number
  readonly initialRto: number
  /** Retransmissions of one segment (or unanswered zero-window probes) before we give up. */
  readonly maxRetries: number
  readonly synAckRetries: number
  readonly timeWaitMs: number
  readonly maxReorderSegments: number
}

export const DEFAULT_TCP_CONFIG: TcpConfig = {
  rcvBuf: 512 * 1024,
  sndBufMax: 4 * 1024 * 1024,
  minRto: 200, // Linux's TCP_RTO_MIN; RFC 6298's 1 s is for the open Internet, not a local device
  maxRto: 60_000,
  initialRto: 1000,
  maxRetries: 10,
  synAckRetries: 5,
  // We are the passive side nearly always and TIME-WAIT only follows an active close; its job
  // here is just to re-ACK a retransmitted FIN, so a couple of seconds is plenty.
  timeWaitMs: 2000,
  maxReorderSegments: 512,
}

/** What a flow needs from its stack. */
export interface TcpHost {
  readonly timers: Timers
  readonly config: TcpConfig
  send(packet: Buffer): void
  /** Call flow.flush() once the current burst of input is processed (ACK batching). */
  deferAck(flow: { flush(): void }): void
  /** The flow is over (removed from the table under its key). */
  done(flow: { readonly key: string }): void
  /** Counts an RST we sent. */
  sentReset(): void
}

/** Live byte counters the flow updates (up = application → Duplex). */
export interface ByteCounters {
  bytesUp: number
  bytesDown: number
}
