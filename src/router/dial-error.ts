import { TunnelError, type TunnelErrorOptions } from '../errors'

/**
 * Why a dial failed, in terms every front-end can report: a SOCKS5 reply code, 502 or 504, an
 * RST, an ICMP unreachable — and the pool's "try another connection".
 *  - refused, prohibited, unreachable, network-unreachable, timeout: the far side's answer
 *    (RFC 4254 reasons and OpenSSH's descriptions, or a socket's errno);
 *  - resource: the SSH server is out of resources (sshd out of descriptors): another SSH
 *    connection may carry it;
 *  - unsupported: the transport cannot open such a stream at all;
 *  - not-routed: the destination is not in the tunnelled subnets (nothing was dialled);
 *  - not-connected: the transport is down and did not come back in time.
 */
export type DialFailureReason =
  | 'refused'
  | 'prohibited'
  | 'unreachable'
  | 'network-unreachable'
  | 'timeout'
  | 'resource'
  | 'unsupported'
  | 'not-routed'
  | 'not-connected'

/**
 * The one way a Dialer rejects. Producers construct it (the SSH engines, the route decision, a
 * dialer over plain sockets); consumers narrow it with instanceof and switch on `reason`. Its
 * code is CHANNEL_OPEN, or NOT_CONNECTED when the transport is down.
 */
export class DialError extends TunnelError {
  readonly reason: DialFailureReason

  constructor(reason: DialFailureReason, message: string, opts: TunnelErrorOptions = {}) {
    super(reason === 'not-connected' ? 'NOT_CONNECTED' : 'CHANNEL_OPEN', message, opts)
    this.name = 'DialError'
    this.reason = reason
  }

  override withPrefix(prefix: string): DialError {
    return new DialError(this.reason, `${prefix}: ${this.message}`, { hint: this.hint, cause: this.cause })
  }

  /**
   * A dialer over a plain socket (the DNS interceptor's TCP side, tests): its errno as a reason.
   * ENOTFOUND counts as an unreachable host, as a SOCKS5 client expects.
   */
  static fromSocketError(e: unknown, where?: string): DialError {
    if (e instanceof DialError) return e
    const code = (e as NodeJS.ErrnoException | undefined)?.code
    const reason: DialFailureReason =
      code === 'ECONNREFUSED'
        ? 'refused'
        : code === 'ENETUNREACH'
          ? 'network-unreachable'
          : code === 'EHOSTUNREACH' || code === 'EHOSTDOWN' || code === 'ENOTFOUND'
            ? 'unreachable'
            : code === 'ETIMEDOUT'
              ? 'timeout'
              : 'unsupported'
    const msg = e instanceof Error ? e.message : String(e)
    return new DialError(reason, where ? `${where}: ${msg}` : msg, { cause: e })
  }
}
