/**
 * Mistakes commander cannot name, found on the raw argv before it parses: a subcommand typed
 * wrong (read as a host name today), `exec` without `--` (its command's options would be taken
 * as ours: `psql -h` would print our help), `--` without `exec`, an option whose value is the
 * next option (`-D -r bastion`), and comma-separated subnets. Each becomes a USAGE error whose
 * hint shows the right form.
 */
import { TunnelError } from '../errors'
import { editDistance } from '../config/edit-distance'

/** How an option is written and whether it takes a value (from commander's option list). */
export interface OptionShape {
  readonly short?: string
  readonly long?: string
  readonly takesValue: boolean
}

export interface ScannedArgv {
  /** Operands before `--`, with their index in argv. */
  readonly positionals: ReadonlyArray<{ readonly token: string; readonly index: number }>
  /** Values of value-taking options given as the next argument: option as written, value, index. */
  readonly values: ReadonlyArray<{ readonly option: string; readonly value: string; readonly index: number }>
  /** Index of the first `--`, or -1. */
  readonly dashDash: number
}

/** Splits argv the way commander will: options (and the values they take), operands, `--`. */
export function scanArgv(argv: readonly string[], shapes: readonly OptionShape[]): ScannedArgv {
  const byFlag = new Map<string, OptionShape>()
  for (const s of shapes) {
    if (s.short) byFlag.set(s.short, s)
    if (s.long) byFlag.set(s.long, s)
  }
  const positionals: Array<{ token: string; index: number }> = []
  const values: Array<{ option: string; value: string; index: number }> = []
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!
    if (t === '--') return { positionals, values, dashDash: i }
    if (t.startsWith('--')) {
      const shape = byFlag.get(t)
      if (shape?.takesValue && i + 1 < argv.length) {
        values.push({ option: t, value: argv[i + 1]!, index: i + 1 })
        i++
      }
      continue
    }
    if (t.startsWith('-') && t.length > 1) {
      // A short option with its value attached (-oUser=x) or a cluster of flags (-vv).
      const shape = byFlag.get(t.slice(0, 2))
      if (shape?.takesValue && t.length === 2 && i + 1 < argv.length) {
        values.push({ option: t, value: argv[i + 1]!, index: i + 1 })
        i++
      }
      continue
    }
    positionals.push({ token: t, index: i })
  }
  return { positionals, values, dashDash: -1 }
}

/** Examples for the hint when an option's value is missing. */
const EXAMPLES: Readonly<Record<string, string>> = {
  '-r': '-r user@bastion',
  '--remote': '--remote user@bastion',
  '-D': '-D 1080',
  '--socks': '--socks 1080',
  '--http-proxy': '--http-proxy 3128',
  '-L': '-L 5432:db.internal:5432',
  '-R': '-R 8080:localhost:80',
  '-x': '-x 10.0.99.0/24',
  '-J': '-J jump.example.com',
  '-i': '-i ~/.ssh/id_ed25519',
  '-p': '-p 2222',
  '-o': '-o User=admin',
  '-c': '-c work',
  '--profile': '--profile work',
}

/** Values that may start with '-' (credentials are never echoed back anyway). */
const FREE_VALUES = new Set(['--proxy-auth'])

export { editDistance }

/**
 * The subcommand a mistyped first operand was meant to be, if any: a bare word (no dot, colon,
 * slash or '='; a subnet named by host name has a dot) at most one edit away from a command
 * (two for words longer than five letters), or a transposition of one.
 */
export function nearCommand(word: string, commands: readonly string[]): string | undefined {
  if (word.length < 3 || !/^[a-z-]+$/i.test(word)) return undefined
  const w = word.toLowerCase()
  if (commands.includes(w)) return undefined
  let best: { name: string; d: number } | undefined
  for (const c of commands) {
    const d = editDistance(w, c)
    const sameLetters = w.length === c.length && [...w].sort().join('') === [...c].sort().join('')
    const limit = w.length > 5 ? 2 : 1
    if ((d <= limit || sameLetters) && (!best || d < best.d)) best = { name: c, d }
  }
  return best?.name
}

/**
 * Throws USAGE for the mistakes listed in the module comment. `commands`: the subcommands;
 * `usage`: how the tunnel command starts, for the hints.
 */
export function checkArgv(argv: readonly string[], shapes: readonly OptionShape[], commands: readonly string[]): void {
  const s = scanArgv(argv, shapes)
  for (const v of s.values) {
    if (FREE_VALUES.has(v.option)) continue
    if (/^-[A-Za-z]$|^--[a-z][a-z-]+$/.test(v.value) && shapes.some((o) => o.short === v.value || o.long === v.value)) {
      const eg = EXAMPLES[v.option] ?? `${v.option} VALUE`
      throw new TunnelError('USAGE', `${v.option} needs a value, but the next argument is the option ${v.value}`, {
        hint: `give the value right after it: subnet-tunnel ${eg} …`,
      })
    }
  }
  const first = s.positionals[0]?.token
  if (first !== undefined && !commands.includes(first)) {
    if (first === 'version') throw new TunnelError('USAGE', 'unknown command "version"', { hint: 'subnet-tunnel --version' })
    const meant = nearCommand(first, commands)
    if (meant !== undefined) {
      throw new TunnelError('USAGE', `unknown command "${first}"`, {
        hint: `did you mean \`subnet-tunnel ${meant}\`? (a subnet given by host name needs its full name, e.g. ${first}.example.com)`,
      })
    }
  }
  if (first !== undefined && commands.includes(first)) return // a subcommand: its own rules
  const exec = s.positionals.find((p) => p.token === 'exec')
  // (`exec --only -- CMD`: --only may stand between exec and --.)
  const afterExec = exec && argv[exec.index + 1] === '--only' ? exec.index + 2 : exec?.index !== undefined ? exec.index + 1 : -1
  if (exec && argv[afterExec] !== '--') {
    const rest = argv.slice(exec.index + 1).join(' ')
    throw new TunnelError('USAGE', 'exec needs -- before the command', {
      hint: `… exec -- ${rest || 'CMD ARGS'} (without --, the command's own options would be read as subnet-tunnel's)`,
    })
  }
  if (s.dashDash >= 0 && !(exec && afterExec === s.dashDash)) {
    throw new TunnelError('USAGE', '-- without exec', {
      hint: `to run a command with the tunnel up: subnet-tunnel -r bastion 10.0.0.0/16 exec -- ${argv.slice(s.dashDash + 1).join(' ') || 'CMD ARGS'}`,
    })
  }
  const listed = (value: string): boolean => value.includes(',') && value.split(',').filter(Boolean).length > 1
  for (const p of s.positionals) {
    if (exec && p.index >= exec.index) break
    if (listed(p.token)) {
      throw new TunnelError('USAGE', `"${p.token}": one subnet per argument`, {
        hint: `separate subnets with spaces: ${p.token.split(',').filter(Boolean).join(' ')}`,
      })
    }
  }
  for (const v of s.values) {
    if ((v.option === '-x' || v.option === '--exclude') && listed(v.value)) {
      throw new TunnelError('USAGE', `${v.option} "${v.value}": one network per ${v.option}`, {
        hint: `repeat the option: ${v.value.split(',').filter(Boolean).map((x) => `${v.option} ${x}`).join(' ')}`,
      })
    }
  }
}
