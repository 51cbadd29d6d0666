/**
 * Host and user names given on the command line, checked as OpenSSH 9.6+ checks them
 * (readconf.c: ssh_valid_hostname, ssh_valid_ruser) BEFORE anything expands them into %h, %n or
 * %r: a ProxyCommand or `Match exec` is run by /bin/sh, so `-r 'host$(id)'` would otherwise run
 * `id` — through `ssh -G` (Match exec) on an OpenSSH older than 9.6, and through our own
 * ProxyCommand when there is no ssh binary at all (the parser fallback). Names from config files
 * are the user's own and are not checked, as in OpenSSH.
 */
import { TunnelError } from '../errors'

/** Characters ssh_valid_hostname() refuses anywhere in a host name (besides space and control). */
const HOST_BAD = `'\`"$\\;&<>|(){},`
/** Characters ssh_valid_ruser() refuses anywhere in a user name. */
const USER_BAD = `'\`";&<>|(){}`

/** C isspace() in the C locale. */
const isSpace = (c: string): boolean => c === ' ' || (c >= '\t' && c <= '\r')
/** C iscntrl() in the C locale: 0–31 and DEL. Bytes above 127 (UTF-8) pass, as in OpenSSH. */
const isCntrl = (c: string): boolean => c <= '\x1f' || c === '\x7f'

/** ssh_valid_hostname(): no leading '-', no shell metacharacter, space or control character. */
export function validSshHostname(s: string): boolean {
  if (s.startsWith('-')) return false
  for (const c of s) if (HOST_BAD.includes(c) || isSpace(c) || isCntrl(c)) return false
  return true
}

/**
 * ssh_valid_ruser(): no leading '-', no control character, no shell metacharacter other than
 * '$' and '\' (user names may be "DOMAIN\user"), no '-' right after a space, no trailing '\'.
 */
export function validSshUser(s: string): boolean {
  if (s.startsWith('-')) return false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (isCntrl(c) || USER_BAD.includes(c)) return false
    if (isSpace(c) && s[i + 1] === '-') return false
    if (c === '\\' && i === s.length - 1) return false
  }
  return true
}

const HINT = 'host and user names may not start with "-" or contain control characters or shell syntax (quotes, $ ` ; & | < > ( ) { })'

/** Throws USAGE when host is not a name OpenSSH would accept; `where` says which argument. */
export function checkSshHostname(host: string, where: string): void {
  if (!validSshHostname(host)) {
    throw new TunnelError('USAGE', `${where}: host name ${JSON.stringify(host)} contains characters ssh does not allow`, { hint: HINT })
  }
}

/** Throws USAGE when user is not a remote user name OpenSSH would accept. */
export function checkSshUser(user: string, where: string): void {
  if (!validSshUser(user)) {
    throw new TunnelError('USAGE', `${where}: user name ${JSON.stringify(user)} contains characters ssh does not allow`, { hint: HINT })
  }
}
