/**
 * One error type for everything the user can be told about: a stable `code` that tests and
 * scripts match on, a one-line message, and a one-line hint that says what to do next.
 *
 * Layers wrap lower-level failures with `{ cause }` and a layer prefix ("nft: add rule: …"),
 * so the message says where it failed and the cause keeps the detail for `-v`.
 */
export type ErrorCode =
  // command line and configuration
  | 'USAGE' // unknown option, missing argument
  | 'BAD_CIDR' // a subnet/exclude that is not a CIDR, IP or resolvable host
  | 'NO_SUBNETS' // nothing to tunnel
  | 'NO_REMOTE' // no -r and no $SUBNET_TUNNEL_REMOTE
  | 'SSH_CONFIG' // ssh -G / config file failed or gave something unusable
  // reaching and authenticating to the bastion
  | 'UNKNOWN_HOST' // a name that does not resolve
  | 'SSH_CONNECT_REFUSED'
  | 'SSH_CONNECT_TIMEOUT'
  | 'SSH_CONNECT' // any other transport failure (unreachable, reset, ProxyCommand died)
  | 'SSH_AUTH' // every method refused
  | 'SSH_NEED_TTY' // a passphrase/password is needed and there is no terminal
  | 'HOSTKEY_MISMATCH' // known_hosts has a different key: possible MITM
  | 'HOSTKEY_UNKNOWN' // not in known_hosts and we may not ask
  | 'HOSTKEY_REVOKED' // @revoked in known_hosts
  | 'SSH_PROTOCOL' // handshake / algorithm negotiation failed
  | 'SSH_UNSUPPORTED' // needs what this SSH engine cannot do (certificates, FIDO, GSSAPI, post-quantum KEX with ssh2)
  | 'REMOTE_EXEC' // the bastion refused or failed a command we needed (e.g. reading resolv.conf)
  // the data path
  | 'CHANNEL_OPEN' // direct-tcpip refused by the server or the target
  | 'FORWARDING_PROHIBITED' // the start-up probe channel was refused: the bastion forwards nothing for us
  | 'NOT_CONNECTED' // the SSH connection is down and did not come back in time
  // the kernel side
  | 'FW_UNSUPPORTED' // the backend's tools are missing or unusable here
  | 'FW_APPLY' // a rule command failed
  | 'NEED_ROOT' // not root and sudo cannot help
  | 'UNSAFE_INSTALL' // a NOPASSWD sudoers rule for this install would be plain root (install-safety.ts)
  | 'HELPER' // the privileged helper died or broke protocol
  | 'PORT_IN_USE'
  | 'LISTEN' // any other listen failure
  | 'ORIGINAL_DST' // SO_ORIGINAL_DST lookup failed
  | 'DNS_CONFIG' // no usable nameserver (local or remote) for --dns
  // observability
  | 'CONTROL' // control socket directory unsafe/unusable, or another instance holds our socket
  | 'AUDIT_LOG' // --audit-log file cannot be opened, or is a symlink, not a regular file, not ours, or hard-linked
  | 'PIDFILE' // --pidfile cannot be written safely (symlink, not ours, hard-linked, or a directory others can write)
  | 'LOG_FILE' // --log-file cannot be opened, or is a symlink, not a regular file, not ours, or hard-linked
  | 'DEMO_DEPS' // the demo's Debian packages are missing (and --no-install, or no apt-get, or apt-get failed)
  | 'ALREADY_RUNNING' // another instance in this network namespace captures the same subnets (--force to start anyway)
  | 'INTERNAL'

export interface TunnelErrorOptions {
  hint?: string
  cause?: unknown
}

export class TunnelError extends Error {
  readonly code: ErrorCode
  readonly hint: string | undefined

  constructor(code: ErrorCode, message: string, opts: TunnelErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'TunnelError'
    this.code = code
    this.hint = opts.hint
  }

  /** Same code and hint, message prefixed by the layer that adds context ("nft: add rule: …"). */
  withPrefix(prefix: string): TunnelError {
    return new TunnelError(this.code, `${prefix}: ${this.message}`, { hint: this.hint, cause: this.cause })
  }
}

export function isTunnelError(e: unknown, code?: ErrorCode): e is TunnelError {
  return e instanceof TunnelError && (code === undefined || e.code === code)
}

/** Message of any thrown value, without a stack. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message
  return String(e)
}

/** Wraps anything that is not already a TunnelError, keeping the original as the cause. */
export function toTunnelError(e: unknown, code: ErrorCode = 'INTERNAL', hint?: string): TunnelError {
  if (e instanceof TunnelError) return e
  return new TunnelError(code, errorMessage(e), { hint, cause: e })
}
