/**
 * Credentials on other programs' command lines, hidden before we record them. The audit log and
 * `status` name the local process behind each connection by its command line (/proc/PID/cmdline),
 * and a proxy client very often carries its password there: `curl -x http://alice:pw@127.0.0.1:8080`,
 * `curl --proxy-user alice:pw`, `git clone https://TOKEN@host/…`, `mysql -ppw`. /proc shows that to
 * local users only while the process lives; a log file keeps it. So we keep the program and its
 * shape and drop the secret parts. Heuristics, by design conservative: a false positive costs one
 * argument in an audit line, a false negative a password in a file.
 */

const HIDDEN = '…'

/** Options whose next argument (or `=value`) is a secret, whatever the program. */
const SECRET_OPTION = /^--?(?:[\w-]*[-_])?(?:pass|passwd|password|passphrase|secret|token|proxy-auth|proxy-user|credentials?|api-?key)$/i

/** `-u`/`-U`/`--user` take a secret only in the `user:password` form (curl); `sort -u` does not. */
const USER_OPTION = /^(?:-u|-U|--user)$/

/** A URL's userinfo: `scheme://anything@` up to the first '/' — a token alone is a secret too. */
const USERINFO = /([A-Za-z][\w+.-]*:\/\/)[^/\s@]*@/g

/** `Authorization: …` / `Proxy-Authorization: …` given as a header argument (curl -H). */
const AUTH_HEADER = /^((?:proxy-)?authorization:\s*(?:\w+\s+)?).+$/i

/** mysql/mariadb tools take the password glued to -p. */
const GLUED_P = /^(mysql|mariadb|mysqldump|mysqladmin|mariadb-dump)$/

/** The argv with credentials replaced by '…'; the program name and everything else kept. */
export function redactArgv(argv: readonly string[]): string[] {
  const out: string[] = []
  const prog = (argv[0] ?? '').split('/').pop() ?? ''
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (i > 0 && SECRET_OPTION.test(a)) {
      out.push(a)
      if (i + 1 < argv.length) out.push(HIDDEN)
      i++
      continue
    }
    if (i > 0 && USER_OPTION.test(a) && i + 1 < argv.length && argv[i + 1]!.includes(':')) {
      out.push(a, `${argv[i + 1]!.split(':', 1)[0]}:${HIDDEN}`)
      i++
      continue
    }
    const eq = a.indexOf('=')
    if (i > 0 && eq > 0 && SECRET_OPTION.test(a.slice(0, eq))) {
      out.push(`${a.slice(0, eq)}=${HIDDEN}`)
      continue
    }
    if (i > 0 && eq > 0 && USER_OPTION.test(a.slice(0, eq)) && a.includes(':', eq)) {
      out.push(`${a.slice(0, a.indexOf(':', eq))}:${HIDDEN}`)
      continue
    }
    if (i > 0 && GLUED_P.test(prog) && /^-p.+/.test(a)) {
      out.push(`-p${HIDDEN}`)
      continue
    }
    out.push(a.replace(USERINFO, `$1${HIDDEN}@`).replace(AUTH_HEADER, `$1${HIDDEN}`))
  }
  return out
}
