/**
 * The -r destination: `[user@]host[:port]`, also `ssh://[user@]host[:port]`. IPv6 needs
 * brackets to carry a port (`[2001:db8::1]:2222`); a bare address with several colons is taken
 * as an address without port, because `2001:db8::1:22` cannot be split unambiguously.
 */
import { TunnelError } from '../errors'
import { checkSshHostname, checkSshUser } from './ssh-names'

export interface SshDestination {
  readonly user?: string
  /** Host name, alias or address, without brackets. */
  readonly host: string
  readonly port?: number
}

const HINT = 'use [user@]host[:port]; an IPv6 address with a port as [addr]:port'

/**
 * Parses a destination; throws TunnelError('USAGE') on an empty host, a bad port, or a host or
 * user name that OpenSSH would refuse (ssh-names.ts): these end up in %h/%n/%r of commands run
 * by a shell, so they are checked here, before anything uses them.
 */
export function parseSshDestination(dest: string, what = 'destination'): SshDestination {
  let rest = dest.trim()
  if (rest.toLowerCase().startsWith('ssh://')) rest = rest.slice(6).replace(/\/$/, '')
  // The last '@' separates the user: user names may contain '@' (user@domain@host).
  const at = rest.lastIndexOf('@')
  const user = at >= 0 ? rest.slice(0, at) : undefined
  rest = at >= 0 ? rest.slice(at + 1) : rest
  if (user === '') throw new TunnelError('USAGE', `empty user name in destination "${dest}"`, { hint: HINT })

  let host: string
  let portText: string | undefined
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']')
    if (close < 0) throw new TunnelError('USAGE', `missing "]" in destination "${dest}"`, { hint: HINT })
    host = rest.slice(1, close)
    const after = rest.slice(close + 1)
    if (after !== '') {
      if (!after.startsWith(':')) throw new TunnelError('USAGE', `unexpected "${after}" after "]" in "${dest}"`, { hint: HINT })
      portText = after.slice(1)
    }
  } else {
    const colons = rest.split(':').length - 1
    if (colons === 1) {
      const i = rest.indexOf(':')
      host = rest.slice(0, i)
      portText = rest.slice(i + 1)
    } else {
      host = rest
    }
  }
  if (host === '') throw new TunnelError('USAGE', `no host in destination "${dest}"`, { hint: HINT })
  if (host.startsWith('-')) throw new TunnelError('USAGE', `host "${host}" may not start with "-"`, { hint: HINT })
  checkSshHostname(host, `${what} ${JSON.stringify(dest)}`)
  if (user !== undefined) checkSshUser(user, `${what} ${JSON.stringify(dest)}`)
  return { user, host, port: portText === undefined ? undefined : parsePort(portText, dest) }
}

function parsePort(text: string, dest: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  if (!(n >= 1 && n <= 65535)) throw new TunnelError('USAGE', `bad port "${text}" in destination "${dest}"`, { hint: HINT })
  return n
}
