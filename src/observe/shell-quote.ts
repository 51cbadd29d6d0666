/**
 * Quoting for text we print as a command for the user to paste into a shell (hints such as
 * `ssh-keygen -R HOST`, `rm PATH`). Host names, paths and aliases come from the command line or
 * from a config file, so a hint must never turn them into shell syntax: `host$(id)` pasted
 * unquoted would run `id`.
 */

/** Characters that never need quoting in a POSIX shell word. */
const PLAIN = /^[A-Za-z0-9_@%+=:,./-]+$/

/** One shell word for s: unchanged when it is plain, else single-quoted ('\'' for a quote). */
export function shellQuote(s: string): string {
  if (s !== '' && PLAIN.test(s)) return s
  return `'${s.replace(/'/g, `'\\''`)}'`
}
