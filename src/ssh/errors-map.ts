import { TunnelError, errorMessage } from '../errors'

/** Where a transport failure happened, for one-line messages ("via jump host j1"). */
export interface Where {
  readonly host: string
  readonly port: number
  /** Set when host is reached through a jump host, e.g. "via jump host bastion1". */
  readonly via?: string
}

function place(w: Where): string {
  const hp = w.host.includes(':') ? `[${w.host}]:${w.port}` : `${w.host}:${w.port}`
  return w.via ? `${hp} (${w.via})` : hp
}

/** Error codes from node's net layer; with autoSelectFamily an AggregateError carries them in .errors. */
function sysCode(e: unknown): string | undefined {
  const err = e as { code?: unknown; errors?: unknown[] }
  if (typeof err?.code === 'string') return err.code
  if (Array.isArray(err?.errors)) for (const sub of err.errors) {
    const c = sysCode(sub)
    if (c) return c
  }
  return undefined
}

/**
 * Maps anything thrown while reaching or handshaking with an SSH server to a TunnelError with
 * a stable code. TunnelErrors (from the host key verifier, the auth layer, ProxyCommand) pass
 * through unchanged so their code and hint survive.
 */
export function mapConnectError(e: unknown, w: Where): TunnelError {
  if (e instanceof TunnelError) return e
  const code = sysCode(e)
  const msg = errorMessage(e)
  const level = (e as { level?: unknown })?.level
  const at = place(w)
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return new TunnelError('UNKNOWN_HOST', `ssh: cannot resolve host ${w.host}${w.via ? ` (${w.via})` : ''}`, {
        hint: 'check the name, or set HostName for it in ~/.ssh/config / give the address to -r',
        cause: e,
      })
    case 'ECONNREFUSED':
      return new TunnelError('SSH_CONNECT_REFUSED', `ssh: connect to ${at}: connection refused`, {
        hint: `is sshd running on port ${w.port}? check -p / Port`,
        cause: e,
      })
    case 'ETIMEDOUT':
      return new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: connect to ${at}: timed out`, {
        hint: 'is the host up and the port reachable (firewall)? raise ConnectTimeout with -o if the path is slow',
        cause: e,
      })
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
      return new TunnelError('SSH_CONNECT', `ssh: connect to ${at}: ${code === 'ENETUNREACH' ? 'network' : 'host'} unreachable`, {
        hint: 'check your network connection and routes to that host',
        cause: e,
      })
    case 'ECONNRESET':
    case 'EPIPE':
      return new TunnelError('SSH_CONNECT', `ssh: connection to ${at} reset by peer`, {
        hint: 'the server or something in between dropped the connection; check sshd logs (MaxStartups, tcp wrappers)',
        cause: e,
      })
  }
  if (level === 'client-timeout' && /handshake/i.test(msg)) {
    return new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: ${at}: no SSH handshake within the connect timeout`, {
      hint: 'is this really an SSH server? raise ConnectTimeout with -o if the path is slow',
      cause: e,
    })
  }
  if (level === 'client-timeout') {
    return new TunnelError('SSH_CONNECT_TIMEOUT', `ssh: ${at}: server stopped answering (keepalive timeout)`, {
      hint: 'the network path or the server went away; ServerAliveInterval/CountMax control how fast this is noticed',
      cause: e,
    })
  }
  if (level === 'handshake' || level === 'protocol' || /handshake|algorithm|kex|negotiat/i.test(msg)) {
    return new TunnelError('SSH_PROTOCOL', `ssh: ${at}: ${msg}`, {
      hint: 'the server and client share no algorithm or the server is not speaking SSH; run with -vv for details',
      cause: e,
    })
  }
  if (level === 'client-authentication') {
    return new TunnelError('SSH_AUTH', `ssh: ${at}: ${msg}`, { hint: 'load your key with ssh-add or pass it with -i', cause: e })
  }
  return new TunnelError('SSH_CONNECT', `ssh: ${at}: ${msg}`, { cause: e })
}

/** Why a direct-tcpip channel was not opened. */
export type ChannelOpenReason = 'prohibited' | 'refused' | 'unreachable' | 'unknown-type' | 'resource' | 'timeout'

/** A TunnelError('CHANNEL_OPEN') that also says why, so callers can log or count by reason. */
export class ChannelOpenError extends TunnelError {
  readonly reason: ChannelOpenReason
  constructor(reason: ChannelOpenReason, message: string, hint?: string, cause?: unknown) {
    super('CHANNEL_OPEN', message, { hint, cause })
    this.name = 'ChannelOpenError'
    this.reason = reason
  }
}

/** RFC 4254 §5.1 reason codes for SSH_MSG_CHANNEL_OPEN_FAILURE. */
const PROHIBITED = 1
const CONNECT_FAILED = 2
const UNKNOWN_CHANNEL_TYPE = 3
const RESOURCE_SHORTAGE = 4

/**
 * Maps ssh2's channel-open failure (err.reason = RFC 4254 code, message carries the server's
 * description, e.g. OpenSSH's strerror() of its own connect()) to a ChannelOpenError.
 * `server` names the SSH server so the user knows who saw the failure.
 */
export function mapChannelOpenError(e: unknown, dst: Where, server: string): ChannelOpenError {
  const reason = (e as { reason?: unknown })?.reason
  const raw = errorMessage(e).replace(/^\(SSH\) Channel open failure:\s*/, '').trim()
  const what = `ssh: open ${place(dst)}`
  switch (reason) {
    case PROHIBITED:
      return new ChannelOpenError('prohibited', `${what}: administratively prohibited by ${server}${raw ? ` (${raw})` : ''}`,
        'the server refuses this forward: check AllowTcpForwarding / PermitOpen in its sshd_config, or restrict/permitopen on your key', e)
    case CONNECT_FAILED:
      // OpenSSH sends its generic "open failed" when it could not even create the socket — in
      // practice sshd out of file descriptors (channels.c connect_to_helper: socket() EMFILE).
      // Another SSH connection (another sshd process) can still carry the channel.
      if (raw === 'open failed') {
        return new ChannelOpenError('resource', `${what}: ${server} could not open a socket (likely out of file descriptors)`,
          'the bastion hit its open-files limit: subnet-tunnel opens more SSH connections up to --connections-max', e)
      }
      if (raw === '' || /refused/i.test(raw)) {
        return new ChannelOpenError('refused', `${what}: connection refused (as seen from ${server})`,
          'nothing listens on that port, or a firewall near the target rejects it', e)
      }
      return new ChannelOpenError('unreachable', `${what}: ${raw.toLowerCase()} (as seen from ${server})`,
        `${server} cannot reach that address: check the route from ${server} to it`, e)
    case UNKNOWN_CHANNEL_TYPE:
      return new ChannelOpenError('unknown-type', `${what}: ${server} does not support direct-tcpip channels`,
        'the server is not a full SSH server (or forwarding is compiled out)', e)
    case RESOURCE_SHORTAGE:
      return new ChannelOpenError('resource', `${what}: resource shortage on ${server}${raw ? ` (${raw})` : ''}`,
        'sshd hit a limit (MaxSessions, open files): fewer concurrent connections, or raise the limit on the server', e)
  }
  return new ChannelOpenError('unreachable', `${what}: ${raw || 'channel open failed'} (${server})`, undefined, e)
}
