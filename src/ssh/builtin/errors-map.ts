import { TunnelError, errorMessage } from '../../errors'
import { formatHostPort } from '../../config/host-port'
import { DialError } from '../../router/dial-error'
import { channelOpenFailure } from '../channel-open-failure'
import { channelOpenFailureCode } from './ssh2-compat'

/** Where a transport failure happened, for one-line messages ("via jump host j1"). */
export interface Where {
  readonly host: string
  readonly port: number
  /** Set when host is reached through a jump host, e.g. "via jump host bastion1". */
  readonly via?: string
}

function place(w: Where): string {
  const hp = formatHostPort(w.host, w.port)
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

/**
 * ssh2's channel-open failure (err.reason = the RFC 4254 code, the message carries the server's
 * description) as a DialError (channel-open-failure.ts). `server` names the SSH server.
 */
export function mapChannelOpenError(e: unknown, dst: Where, server: string): DialError {
  const raw = errorMessage(e).replace(/^\(SSH\) Channel open failure:\s*/, '')
  const err = channelOpenFailure(channelOpenFailureCode(e), raw, dst, server)
  return new DialError(err.reason, err.message, { hint: err.hint, cause: e })
}
