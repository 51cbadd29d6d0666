/**
 * Why sudo refused to start the helper, in words, from what sudo printed. Its first line is often
 * a harmless warning ("unable to resolve host", a lecture) and the reason comes later; the
 * usual reasons get a sentence that says what they mean for the user.
 */

/** Said in every NEED_ROOT hint: what works without root at all. */
export const NO_ROOT_NEEDED = '-D, --http-proxy, -L and -R need no root'

/** sudo lines that are never the reason (warnings and its prompt/lecture). */
const HARMLESS = [
  /unable to resolve host/i,
  /^\s*$/,
  /^\[sudo\] password for/i,
  /^We trust you have received the usual lecture/i,
  /^\s*#\d\)/, // the lecture's numbered lines
  /^\s*(Respect the privacy|Think before you type|With great power)/i,
  /^Sorry, try again\.?$/i,
]

/**
 * The NEED_ROOT message for a failed sudo. `stderr`: what sudo (and the helper) printed;
 * `interactive`: whether sudo could ask for a password (else it ran with -n).
 */
export function sudoFailureReason(stderr: string, interactive: boolean, user: string): string {
  const lines = stderr.split('\n').map((l) => l.trim())
  const has = (re: RegExp): string | undefined => lines.find((l) => re.test(l))
  if (has(/is not in the sudoers file/i)) return `not root, and ${user} is not in the sudoers file (sudo refuses every command)`
  if (has(/may not run sudo/i)) return `not root, and ${user} may not run sudo on this host`
  const notAllowed = has(/is not allowed to execute/i)
  if (notAllowed) return `not root, and sudo does not allow ${user} to run the helper: ${notAllowed.replace(/^sudo:\s*/, '')}`
  const wrong = has(/incorrect password attempts?/i)
  if (wrong) return `sudo: ${wrong.replace(/^sudo:\s*/, '')}`
  if (has(/a password is required|a terminal is required/i) || !interactive) return 'not root and sudo is not available without a password'
  const reason = lines.find((l) => !HARMLESS.some((re) => re.test(l)))
  return reason ? `sudo failed: ${reason.replace(/^sudo:\s*/, '')}` : 'sudo failed without saying why'
}
