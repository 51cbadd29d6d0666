/**
 * Maps how an OpenSSH master ended (its exit status and what it wrote on stderr) to our stable
 * error codes. OpenSSH's own line is kept in the message, so the user sees exactly what ssh
 * said; the code and hint are ours. Pure (unit-tested against real ssh messages).
 */
import { TunnelError, type ErrorCode } from '../../errors'

export interface MasterOutcome {
  /** Exit status, or null when killed by a signal. */
  readonly code: number | null
  readonly signal: string | null
  /** stderr lines, oldest first (bounded by the caller). */
  readonly stderr: readonly string[]
  /** Whether ssh could prompt (a terminal); without one BatchMode was set. */
  readonly interactive: boolean
  /** The destination as the user wrote it, for hints. */
  readonly destination: string
}

interface Rule {
  readonly re: RegExp
  readonly code: ErrorCode
  readonly hint: (o: MasterOutcome) => string | undefined
}

/** Quoted for a shell, so a hint can be pasted even when the name holds odd characters. */
function q(s: string): string {
  return /^[A-Za-z0-9_.@:%+=,/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

// Most specific first: "Host key verification failed." follows every host-key problem.
const RULES: readonly Rule[] = [
  {
    // ServerAliveInterval × ServerAliveCountMax without an answer (clientloop.c server_alive_check).
    re: /Timeout, server .* not responding/i,
    code: 'SSH_CONNECT_TIMEOUT',
    hint: () => 'the network path or the server went away (keepalive timeout); ServerAliveInterval/CountMax control how fast this is noticed',
  },
  {
    re: /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed|host key mismatch/i,
    code: 'HOSTKEY_MISMATCH',
    hint: () => 'the server presented a different key than known_hosts holds: if you expected the change, remove the old key with ssh-keygen -R HOST; otherwise someone may be intercepting the connection',
  },
  {
    re: /REVOKED HOST KEY|host key .* revoked|revoked key/i,
    code: 'HOSTKEY_REVOKED',
    hint: () => 'the key is marked @revoked in known_hosts: do not connect; ask the server\'s administrator',
  },
  {
    re: /No .* host key is known for|Host key verification failed/i,
    code: 'HOSTKEY_UNKNOWN',
    hint: (o) =>
      o.interactive
        ? 'the host key was not accepted'
        : `run \`ssh ${q(o.destination)}\` once in a terminal to check and accept the host key (no terminal here to ask)`,
  },
  {
    re: /Could not resolve hostname|Name or service not known|nodename nor servname|Temporary failure in name resolution/i,
    code: 'UNKNOWN_HOST',
    hint: () => 'check the name, or set HostName for it in ~/.ssh/config',
  },
  {
    re: /Connection refused/i,
    code: 'SSH_CONNECT_REFUSED',
    hint: () => 'is sshd running on that port? check -p / Port',
  },
  {
    re: /timed out|Connection timeout/i,
    code: 'SSH_CONNECT_TIMEOUT',
    hint: () => 'is the host up and the port reachable (firewall)? raise ConnectTimeout with -o if the path is slow',
  },
  {
    re: /Unable to negotiate|no matching (key exchange|host key type|cipher|MAC)|kex_exchange_identification|invalid format|Bad packet length|incompatible/i,
    code: 'SSH_PROTOCOL',
    hint: () => 'client and server share no algorithm, or the server is not speaking SSH; ssh -vv shows the offers',
  },
  {
    re: /Permission denied|Too many authentication failures|Authentication failed|No more authentication methods/i,
    code: 'SSH_AUTH',
    hint: (o) =>
      o.interactive
        ? 'no key or password was accepted: ssh-add your key, or pass it with -i'
        : 'no key was accepted and there is no terminal to ask for a passphrase, password or code: load the key into ssh-agent (ssh-add), or run in a terminal',
  },
  {
    re: /Bad owner or permissions|Bad configuration option|Unsupported option|command-line line|terminating, \d+ bad configuration/i,
    code: 'SSH_CONFIG',
    hint: () => '`ssh -G HOST` shows what ssh makes of the configuration',
  },
  {
    re: /No route to host|Network is unreachable|Connection reset|Connection closed by|Broken pipe|closed by remote host/i,
    code: 'SSH_CONNECT',
    hint: () => 'check the network path to the server',
  },
]

/** The lines worth showing: ssh's warnings about added hosts and debug noise are dropped. */
function meaningful(lines: readonly string[]): string[] {
  return lines
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^Warning: Permanently added/i.test(l) && !/^@+$/.test(l) && !/^debug\d?:/.test(l))
}

/** ssh's own line as our message: "ssh: …" once, whether or not ssh already said "ssh:". */
function sshSays(line: string): string {
  return /^ssh: /.test(line) ? line : `ssh: ${line}`
}

/**
 * What the one line leaves out: a changed key's fingerprint (ssh prints it in its banner, which
 * we do not repeat), and that a silent server was noticed by keepalive.
 */
function detail(code: ErrorCode, lines: readonly string[]): string {
  if (code === 'HOSTKEY_MISMATCH' || code === 'HOSTKEY_REVOKED') {
    const at = lines.findIndex((l) => /fingerprint for the .* key sent by the remote host is/i.test(l))
    const fp = at >= 0 ? /SHA256:[A-Za-z0-9+/]{43}/.exec(lines.slice(at, at + 2).join(' ')) : null
    const kind = at >= 0 ? /for the (\S+) key/.exec(lines[at]!)?.[1] : undefined
    return fp ? ` (the server now presents ${kind ? `${kind} key ` : ''}${fp[0]})` : ''
  }
  if (code === 'SSH_CONNECT_TIMEOUT' && lines.some((l) => /not responding/i.test(l))) return ' (keepalive)'
  return ''
}

/** The error for a master that exited before it was ready (or the one that ended a session). */
export function mapMasterOutcome(o: MasterOutcome): TunnelError {
  const lines = meaningful(o.stderr)
  const text = lines.join('\n')
  for (const r of RULES) {
    if (!r.re.test(text)) continue
    // Show ssh's own line that matched (the last one: ssh says the decisive thing last).
    const line = [...lines].reverse().find((l) => r.re.test(l)) ?? lines[lines.length - 1] ?? ''
    return new TunnelError(r.code, sshSays(line) + detail(r.code, lines), { hint: r.hint(o) })
  }
  const last = lines[lines.length - 1]
  const how = o.signal ? `was killed by ${o.signal}` : `exited with status ${o.code ?? '?'}`
  return new TunnelError('SSH_CONNECT', last ? sshSays(last) : `ssh: the OpenSSH master ${how} without a message`, {
    hint: `try \`ssh -v ${q(o.destination)}\` to see what happens`,
  })
}
