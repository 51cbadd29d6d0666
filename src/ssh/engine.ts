/**
 * What the rest of the program needs from an SSH implementation: one connection per bastion,
 * kept up by its engine, that opens channels (a Dialer), runs a command, and asks the server
 * to listen (-R). Two engines implement it: builtin/ (ssh2, in-process) and openssh/ (the
 * user's own `ssh` as ControlMaster). The pool, the tunnel and the router know only this file.
 */
import type { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { RemotePlan } from '../config/ssh-config-types'
import type { ConnMeta, Destination, IncomingConnection, RemoteListener, RemoteListenSpec } from '../router/types'

export type { RemotePlan } from '../config/ssh-config-types'
export type { IncomingConnection, RemoteListener, RemoteListenSpec } from '../router/types'

export type ConnectionState = 'connecting' | 'up' | 'down' | 'closed'

export interface ConnectionStats {
  reconnects: number
  channelsOpen: number
  channelsTotal: number
}

/** What a command run on the bastion printed, and how it ended. */
export interface RemoteResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * One SSH connection to one bastion, kept up by its engine (reconnect with backoff + jitter).
 * Events: 'up', 'down' (TunnelError), 'reconnecting' ({ attempt, delayMs }), 'closed'.
 */
export interface SshConnection extends EventEmitter {
  readonly state: ConnectionState
  readonly stats: ConnectionStats
  /** First connect; rejects with the typed error. */
  start(): Promise<void>
  close(): Promise<void>
  /** Resolves when up; rejects NOT_CONNECTED after timeoutMs or on close(). */
  waitUp(timeoutMs: number): Promise<void>
  /** One direct-tcpip channel per call; waits a bounded time during an outage; rejects DialError. */
  dial(dst: Destination, meta: ConnMeta): Promise<Duplex>
  /** Runs a command on the bastion (resolv.conf today). REMOTE_EXEC on refusal or timeout. */
  exec(command: string, opts?: { timeoutMs?: number; maxBytes?: number }): Promise<RemoteResult>
  /** -R: asks the bastion to listen; re-requested after every reconnect until stop(). */
  listenRemote(spec: RemoteListenSpec, onConnection: (c: IncomingConnection) => void): RemoteListener
  /** For the up line and status. */
  describe(): { engine: 'builtin' | 'openssh'; detail?: string }
}

export interface SshEngine {
  readonly name: 'builtin' | 'openssh'
  /** A new, not yet started connection for one remote (the pool calls it again to grow). */
  connection(remote: RemotePlan): SshConnection
  /** Releases what the engine holds beyond its connections (the openssh engine's private socket directory); after every connection is closed. */
  close?(): Promise<void>
}
