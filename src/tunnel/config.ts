import { DEFAULT_MAX_SESSIONS } from '../ssh/pool'

/**
 * What a tunnel is asked to do, as text straight from the user (the command line, later a
 * profile): planTunnel() validates all of it offline. The CLI's own options (background,
 * pidfile, exec, verbosity) are not part of it.
 */
export interface TunnelConfig {
  readonly remote: string
  readonly subnets: string[]
  readonly exclude: string[]
  readonly identity: string[]
  readonly sshConfig?: string
  readonly jump?: string
  readonly port?: number
  readonly sshOption: string[]
  readonly method: 'auto' | 'nat' | 'nft' | 'pf' | 'tun'
  /** --ssh-engine: who carries SSH — the user's OpenSSH (ControlMaster), ssh2 in-process, or auto. */
  readonly sshEngine: 'auto' | 'openssh' | 'builtin'
  /** --tun-engine: builtin, tun2socks, hev-socks5-tunnel, sing-box or a path (with --method tun). */
  readonly tunEngine?: string
  readonly listen?: string
  readonly dns: DnsOptions
  /** -D [bind:]port (repeatable): SOCKS5 proxies. */
  readonly socks: string[]
  /** --http-proxy [bind:]port (repeatable). */
  readonly httpProxy: string[]
  /** --proxy-auth USER:PASS (or $SUBNET_TUNNEL_PROXY_AUTH). */
  readonly proxyAuth?: string
  /** --allow CIDR (repeatable): who may use proxies/forwards bound off loopback. */
  readonly allow: string[]
  readonly localForwards: string[]
  readonly remoteForwards: string[]
  readonly auditLog?: string
  /** --audit-dns: also write one line per DNS query to the audit log. */
  readonly auditDns: boolean
  /** --gateway (implied by --gateway-if). */
  readonly gateway: boolean
  /** --gateway-if IFACE[,IFACE] (repeatable): the interfaces a gateway serves. */
  readonly gatewayInterfaces: string[]
  /** --owner-only: capture only the invoking user's local connections. */
  readonly ownerOnly: boolean
  /** SSH connections per bastion opened at start (--connections) and at most (--connections-max). */
  readonly connections: number
  readonly connectionsMax: number
  /** --no-net-watch: false leaves a dead path to keepalive (default: redial on a route change or resume). */
  readonly netWatch?: boolean
  /** --fail-closed: the kernel refuses the captured networks while SSH is down and after exit. */
  readonly failClosed?: boolean
  /** `exec --only -- CMD`: capture only CMD and its children (a cgroup v2 of our own). */
  readonly execOnly?: boolean
  /** --no-forward-check: skip the start-up probe channel (a bastion that permits only some destinations). */
  readonly noForwardCheck?: boolean
  /** --auto-nets: also tunnel the networks the bastion routes (read over an exec channel). */
  readonly autoNets?: boolean
}

/** DNS options; `enabled` is set by --dns and implied by --ns-hosts and --dns-domain. */
export interface DnsOptions {
  readonly enabled: boolean
  readonly nsHosts: string[]
  readonly toNs: string[]
  /** --dns-domain values; `auto` takes the search/domain lines of the bastion's resolv.conf. */
  readonly domains: string[]
  readonly cache: boolean
  /** --dns-all-families: keep answers of an address family no subnet of which is tunnelled. */
  readonly allFamilies?: boolean
  /**
   * --route-by-name: every address a name under the domains resolves to (through the tunnel) is
   * tunnelled from the moment the answer arrives until its TTL (plus a grace) runs out.
   */
  readonly routeByName?: boolean
  /** --route-grace SECONDS: how long a learnt address outlives its TTL. */
  readonly routeGraceS?: number
}

/** Default most SSH connections per bastion (see ssh/pool.ts). */
export const DEFAULT_CONNECTIONS_MAX = DEFAULT_MAX_SESSIONS
