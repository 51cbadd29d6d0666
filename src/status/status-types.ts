/**
 * The JSON document a running instance reports over its control socket (`subnet-tunnel status
 * --json` prints an array of these). Plain data only: it crosses a process boundary, so no
 * classes, no Maps, no bigint, no Dates (ISO strings instead).
 */
import type { ConnTracker, ConnTotals } from '../router/conn-tracker'
import type { FrontEnd } from '../router/types'
import { formatHostPort } from '../config/host-port'

/** The local process behind a connection. pid/command are null when /proc did not tell us
 * (another user's process and we are not root); uid comes from /proc/net/tcp and is always known. */
export interface ProcessInfo {
  readonly pid: number | null
  readonly command: string | null
  readonly uid: number
}

export type RemoteState = 'connecting' | 'up' | 'down' | 'closed'

export interface RemoteStatus {
  /** The bastion as the user named it (`-r` value or profile remote). */
  readonly name: string
  /** Where we actually connect: `host:port`. */
  readonly hostPort: string
  readonly state: RemoteState
  readonly reconnects: number
  /** Channels open over all SSH connections to this bastion. */
  readonly channelsOpen: number
  /** SSH connections to this bastion that are up (the pool grows when one is full). */
  readonly sshConnections?: number
  /** Who speaks SSH: "openssh, master pid 123" (or "your ControlMaster pid …"), "builtin". */
  readonly engine?: string
}

export interface ProxyStatus {
  readonly kind: 'socks5' | 'http'
  /** `host:port` actually bound. */
  readonly address: string
}

export interface ForwardStatus {
  readonly kind: 'local' | 'remote'
  /** As given on the command line, e.g. `5432:db:5432`. */
  readonly spec: string
  /** `host:port` actually bound (locally for -L, on the server for -R). */
  readonly address: string
  /** Where its connections go, `host:port` (absent in snapshots of older versions). */
  readonly target?: string
}

export interface DnsStatus {
  /** The addresses DNS is captured for / served on. */
  readonly servers: string[]
  /** The remote resolver(s) queries go to through the tunnel. */
  readonly remote: string[]
  readonly queries: number
  readonly cacheHits: number
  readonly tunnel: number
  readonly local: number
  readonly failed: number
}

export interface TunStatus {
  /** The TUN interface, `st<id>`. */
  readonly device: string
  /** 'builtin', or the external program (tun2socks, hev-socks5-tunnel, sing-box, …). */
  readonly engine: string
  /** An external engine's version, when it told us. */
  readonly engineVersion?: string
  /** Times an external engine was restarted after exiting. */
  readonly restarts: number
}

export interface ConnectionStatus {
  readonly id: number
  readonly frontEnd: FrontEnd
  /** Client address as seen by our listener, `addr:port` (`[v6]:port`). */
  readonly src: string
  /** Destination `host:port`: an address (transparent) or a name (proxies, forwards). */
  readonly dst: string
  readonly bytesUp: number
  readonly bytesDown: number
  readonly ageS: number
  readonly process?: ProcessInfo
}

/** One line of `subnet-tunnel routes`: a network, what happens to it, and why. */
export interface RouteStatus {
  readonly net: string
  readonly action: 'tunnel' | 'direct'
  readonly origin: 'given' | 'auto-net' | 'learnt' | 'excluded' | 'auto-exclude' | 'transport' | 'local'
  /** The remote it goes through, when not the default one. */
  readonly via?: string
  /** auto-net: the bastion's route; learnt: the names; auto-exclude: why. */
  readonly why?: string
  /** learnt: ISO 8601 time it expires (later while connections to it are open). */
  readonly until?: string
}

export interface StatusSnapshot {
  readonly pid: number
  readonly version: string
  readonly instanceId: string
  /** The network namespace it runs in (inode of /proc/self/ns/net; Linux): `status` shows its own only. */
  readonly netns?: number
  /** The profile it was started from (`up NAME` / `-c NAME`). */
  readonly profile?: string
  /** Where its log goes (--log-file, or -f's default). */
  readonly logFile?: string
  /** The last warning or error it logged. */
  readonly lastError?: { readonly at: string; readonly message: string }
  /** ISO 8601. */
  readonly startedAt: string
  readonly uptimeS: number
  readonly remotes: RemoteStatus[]
  readonly subnets: string[]
  readonly excludes: string[]
  /** Everything routed and kept direct, with its origin (`subnet-tunnel routes`). */
  readonly routes?: RouteStatus[]
  /** Kernel capture method (nat, nft, …); absent when nothing is captured (proxies only). */
  readonly method?: string
  /** The transparent listener's `host:port`, when there is one. */
  readonly listener?: string
  /** --method tun: the device and the engine on it. */
  readonly tun?: TunStatus
  /** --gateway: what it serves, e.g. "br0 from 172.17.0.0/16" or "every interface". */
  readonly gateway?: string
  /** --owner-only: the only uid whose local connections are captured; absent: every local user's. */
  readonly ownerUid?: number
  /** exec --only: only the command's cgroup is captured (nothing else of any user). */
  readonly execOnly?: true
  /** --fail-closed: the kernel guard, open (SSH up) or closed (the networks are refused). */
  readonly failClosed?: 'open' | 'closed'
  readonly proxies: ProxyStatus[]
  readonly forwards: ForwardStatus[]
  readonly dns?: DnsStatus
  /** Totals since start; bytes include the live counts of connections still open. */
  readonly totals: ConnTotals
  readonly connections: ConnectionStatus[]
}


/**
 * The traffic part of a snapshot from a ConnTracker: totals (closed connections' bytes plus the
 * live counts of open ones — the tracker only adds a connection's bytes when it closes) and the
 * open connections, oldest first. `processOf` (e.g. ConnProcesses.get) fills in local processes.
 */
export function trafficSnapshot(
  tracker: ConnTracker,
  processOf?: (id: number) => ProcessInfo | undefined,
  now: number = Date.now(),
): { totals: ConnTotals; connections: ConnectionStatus[] } {
  const totals: ConnTotals = { ...tracker.totals }
  const connections: ConnectionStatus[] = []
  for (const c of tracker.active()) {
    totals.bytesUp += c.bytesUp
    totals.bytesDown += c.bytesDown
    const process = processOf?.(c.meta.id)
    connections.push({
      id: c.meta.id,
      frontEnd: c.meta.frontEnd,
      src: formatHostPort(c.meta.srcAddress, c.meta.srcPort),
      dst: formatHostPort(c.dst.host, c.dst.port),
      bytesUp: c.bytesUp,
      bytesDown: c.bytesDown,
      ageS: Math.max(0, Math.floor((now - c.startedAt) / 1000)),
      ...(process ? { process } : {}),
    })
  }
  connections.sort((a, b) => b.ageS - a.ageS || a.id - b.id)
  return { totals, connections }
}
