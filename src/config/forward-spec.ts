import { TunnelError } from '../errors'

/**
 * One port forward as given on the command line (`-L` / `-R`), parsed like OpenSSH's
 * readconf.c parse_forward().
 *
 * bindHost values:
 * - `'localhost'`: the default — loopback only (127.0.0.1 and ::1, as OpenSSH does). For -R
 *   this is the literal string sent to the server, which OpenSSH's client sends too.
 * - `'*'`: all addresses (written `*` or left empty, e.g. `-L :8080:db:5432` or `-L *:8080:…`).
 *   For -R it goes on the wire as `""` (RFC 4254: "all protocol families").
 * - anything else: the address or name exactly as given (IPv6 without its brackets).
 */
export interface ForwardSpec {
  readonly kind: 'local' | 'remote'
  readonly bindHost: string
  /** 0 only for -R: the server picks the port. */
  readonly bindPort: number
  /** Where connections go: for -L resolved on the SSH server side, for -R on this machine. */
  readonly host: string
  readonly hostPort: number
}

/** The bindHost meaning "every address". */
export const ALL_ADDRESSES = '*'
/** The bindHost used when none is given: loopback only. */
export const LOOPBACK = 'localhost'

const FLAG = { local: '-L', remote: '-R' } as const

// NI_MAXHOST: OpenSSH refuses longer host fields.
const MAX_HOST = 1025

interface Field {
  readonly arg: string
  /** An unbracketed '/' marks a Unix-domain socket path in OpenSSH ≥ 6.7. */
  readonly isPath: boolean
}

/**
 * Splits a spec into fields the way OpenSSH's parse_fwd_field() does: ':' separates, a field
 * in [brackets] is taken literally (IPv6), a backslash escapes the next character, an empty
 * field stays (":8080:h:80" has an empty bind address). Returns undefined on a malformed
 * bracket or a trailing backslash.
 */
function splitFields(s: string): Field[] | undefined {
  const out: Field[] = []
  let i = 0
  while (i < s.length) {
    if (s[i] === '[') {
      const close = s.indexOf(']', i + 1)
      // OpenSSH: the ']' must end the field.
      if (close < 0 || (close + 1 < s.length && s[close + 1] !== ':')) return undefined
      const arg = s.slice(i + 1, close)
      out.push({ arg, isPath: arg.includes('/') })
      i = close + 2
      if (i === s.length) out.push({ arg: '', isPath: false }) // "[::1]:" — an empty last field
      continue
    }
    let arg = ''
    let isPath = false
    let ended = false
    for (; i < s.length; i++) {
      const c = s[i]!
      if (c === '\\') {
        if (i + 1 >= s.length) return undefined
        arg += s[++i]
      } else if (c === ':') {
        i++
        ended = true
        break
      } else {
        if (c === '/') isPath = true
        arg += c
      }
    }
    out.push({ arg, isPath })
    // "8080:db:" ends in a separator: keep the empty last field so the error names it.
    if (ended && i === s.length) out.push({ arg: '', isPath: false })
  }
  return out
}

/** OpenSSH's a2port() without service names: a decimal 0–65535, else -1. */
function toPort(s: string): number {
  if (!/^\d{1,5}$/.test(s)) return -1
  const n = Number(s)
  return n <= 65535 ? n : -1
}

/**
 * Parses the argument of `-L` or `-R`: `[bind_address:]port:host:hostport`.
 * Throws TunnelError('USAGE') with the syntax as hint. Unix-domain socket forwards and the
 * dynamic (`-R port`) form are refused with a clear message rather than misread.
 */
export function parseForward(kind: 'local' | 'remote', text: string): ForwardSpec {
  const flag = FLAG[kind]
  const fail = (why: string): never => {
    throw new TunnelError('USAGE', `${flag} "${text}": ${why}`, { hint: syntaxHint(kind) })
  }
  const fields = splitFields(text.trimStart())
  if (!fields || fields.length === 0 || text.trim() === '') return fail('expected [bind_address:]port:host:hostport')
  if (fields.some((f) => f.isPath)) {
    return fail('Unix-domain socket forwards are not supported (a "/" marks a socket path, as in OpenSSH)')
  }
  if (fields.length === 1 || fields.length === 2) {
    if (kind === 'remote') return fail('dynamic remote forwarding (-R [bind:]port) is not supported; give host:hostport')
    return fail('missing host:hostport (for a SOCKS proxy use -D)')
  }
  if (fields.length > 4) {
    return fail('too many ":" fields; write IPv6 addresses in brackets, e.g. [::1]:8080:[fd00::1]:80')
  }
  const [bind, port, host, hostPort] = fields.length === 4 ? fields.map((f) => f.arg) : [undefined, ...fields.map((f) => f.arg)]

  const bindPort = toPort(port!)
  if (bindPort < 0) return fail(`bad port "${port}" (a number 0-65535)`)
  // Like OpenSSH: only the server can allocate a port (-R 0:…); a local listener needs one.
  if (bindPort === 0 && kind === 'local') return fail('port 0 is only meaningful for -R (server-allocated port)')
  const target = toPort(hostPort!)
  if (target <= 0) return fail(`bad hostport "${hostPort}" (a number 1-65535)`)
  if (host === '' || /\s/.test(host!)) return fail(`bad host "${host}"`)
  if (host!.length >= MAX_HOST || (bind ?? '').length >= MAX_HOST) return fail('host name too long')
  if (bind !== undefined && /\s/.test(bind)) return fail(`bad bind address "${bind}"`)

  let bindHost: string
  if (bind === undefined) bindHost = LOOPBACK
  else if (bind === '' || bind === '*') bindHost = ALL_ADDRESSES
  else bindHost = bind
  return { kind, bindHost, bindPort, host: host!, hostPort: target }
}

/** Whether the spec listens beyond loopback (needs --allow for -L, GatewayPorts for -R). */
export function isNonLoopbackBind(spec: Pick<ForwardSpec, 'bindHost'>): boolean {
  const h = spec.bindHost.toLowerCase()
  return !(h === LOOPBACK || h === '::1' || h === '0:0:0:0:0:0:0:1' || /^127\.\d+\.\d+\.\d+$/.test(h))
}

/** Renders a spec back in command-line form, for logs and status: `-L 127.0.0.1:8080:db:5432`. */
export function formatForward(spec: ForwardSpec): string {
  const br = (h: string): string => (h.includes(':') ? `[${h}]` : h)
  const bind = spec.bindHost === LOOPBACK ? '' : `${br(spec.bindHost)}:`
  return `${FLAG[spec.kind]} ${bind}${spec.bindPort}:${br(spec.host)}:${spec.hostPort}`
}

function syntaxHint(kind: 'local' | 'remote'): string {
  return kind === 'local'
    ? 'use -L [bind_address:]port:host:hostport, e.g. -L 5432:db.internal:5432 or -L [::1]:8080:[fd00::1]:80'
    : 'use -R [bind_address:]port:host:hostport, e.g. -R 8080:localhost:3000 (port 0 = server picks one)'
}
