import { formatHostPort } from '../config/host-port'
import { DialError } from '../router/dial-error'
import type { Destination } from '../router/types'

/** RFC 4254 §5.1 reason codes of SSH_MSG_CHANNEL_OPEN_FAILURE. */
export const OPEN_FAILURE = { PROHIBITED: 1, CONNECT_FAILED: 2, UNKNOWN_CHANNEL_TYPE: 3, RESOURCE_SHORTAGE: 4 } as const

/**
 * The DialError for a refused direct-tcpip open, from the RFC 4254 reason code and the server's
 * description (OpenSSH sends its own connect()'s strerror), for either engine. `server` names
 * the SSH server, so the user knows who saw the failure.
 */
export function channelOpenFailure(code: number | undefined, description: string, dst: Destination, server: string): DialError {
  const raw = description.trim()
  const what = `ssh: open ${formatHostPort(dst.host, dst.port)}`
  // OpenSSH passes its connect() strerror on: "Network is unreachable" vs "No route to host".
  const unreachable = /network/i.test(raw) ? 'network-unreachable' : 'unreachable'
  switch (code) {
    case OPEN_FAILURE.PROHIBITED:
      return new DialError('prohibited', `${what}: administratively prohibited by ${server}${raw ? ` (${raw})` : ''}`, {
        hint: 'the server refuses this forward: check AllowTcpForwarding / PermitOpen in its sshd_config, or restrict/permitopen on your key',
      })
    case OPEN_FAILURE.CONNECT_FAILED:
      // OpenSSH sends its generic "open failed" when it could not even create the socket — in
      // practice sshd out of file descriptors (channels.c connect_to_helper: socket() EMFILE).
      // Another SSH connection (another sshd process) can still carry the channel.
      if (raw === 'open failed') {
        return new DialError('resource', `${what}: ${server} could not open a socket (likely out of file descriptors)`, {
          hint: 'the bastion hit its open-files limit: subnet-tunnel opens more SSH connections up to --connections-max',
        })
      }
      if (raw === '' || /refused/i.test(raw)) {
        return new DialError('refused', `${what}: connection refused (as seen from ${server})`, {
          hint: 'nothing listens on that port, or a firewall near the target rejects it',
        })
      }
      return new DialError(unreachable, `${what}: ${raw.toLowerCase()} (as seen from ${server})`, {
        hint: `${server} cannot reach that address: check the route from ${server} to it`,
      })
    case OPEN_FAILURE.UNKNOWN_CHANNEL_TYPE:
      return new DialError('unsupported', `${what}: ${server} does not support direct-tcpip channels`, {
        hint: 'the server is not a full SSH server (or forwarding is compiled out)',
      })
    case OPEN_FAILURE.RESOURCE_SHORTAGE:
      return new DialError('resource', `${what}: resource shortage on ${server}${raw ? ` (${raw})` : ''}`, {
        hint: 'sshd hit a limit (MaxSessions, open files): fewer concurrent connections, or raise the limit on the server',
      })
  }
  return new DialError(unreachable, `${what}: ${raw || 'channel open failed'} (${server})`)
}
