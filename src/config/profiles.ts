/**
 * Profiles: named tunnels in a TOML file, each table one profile whose keys are the long options
 * without `--` (and `subnets`):
 *
 *     [work]
 *     remote = "admin@bastion.example.com"
 *     subnets = ["10.0.0.0/16", "fd00:10::/64"]
 *     dns-domain = ["corp.internal"]
 *     socks = 1080
 *
 * A profile becomes command-line arguments, which then go through the same parser and the same
 * checks as typed ones: a bad value gets the error it would get on the command line. Only the
 * shape is checked here (known key, right type), with the file and profile named.
 */
import * as fs from 'node:fs'
import { parse, TomlError } from 'smol-toml'
import { TunnelError } from '../errors'
import { editDistance } from './edit-distance'

/** One option as a profile key: its long name without `--`, and how it takes values. */
export interface ProfileOption {
  readonly key: string
  readonly kind: 'flag' | 'negated-flag' | 'count' | 'value' | 'list'
}

/** Keys that are not options: the subnets (the command line's operands). */
const SUBNETS = 'subnets'

function fail(where: string, msg: string, hint?: string): TunnelError {
  return new TunnelError('USAGE', `${where}: ${msg}`, { hint: hint ?? 'see the Profiles section of the README' })
}

/** Parses the file's text; syntax errors name the line. */
export function parseProfiles(text: string, file: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>
  } catch (e) {
    const line = e instanceof TomlError ? ` (line ${e.line}, column ${e.column})` : ''
    throw fail(file, `not valid TOML${line}: ${(e as Error).message.split('\n')[0]}`)
  }
}

/** The profile names of a parsed file (its tables), in file order. */
export function profileNamesOf(doc: Record<string, unknown>): string[] {
  return Object.keys(doc).filter((k) => isTable(doc[k]))
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { c: string; d: number } | undefined
  for (const c of candidates) {
    const d = editDistance(word, c)
    if (d <= 2 && (!best || d < best.d)) best = { c, d }
  }
  return best?.c
}


/** A scalar as a command-line word: strings as they are, integers as digits. */
function word(where: string, key: string, v: unknown): string {
  if (typeof v === 'string') return v
  if (typeof v === 'number' && Number.isInteger(v)) return String(v)
  throw fail(where, `${key}: expected a string${key === SUBNETS ? '' : ' or a number'}, got ${describe(v)}`)
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list'
  if (isTable(v)) return 'a table'
  return typeof v === 'string' ? `"${v}"` : String(v)
}

/**
 * The command-line arguments of profile `name` (options first, then the subnets). Throws USAGE
 * for a missing profile, an unknown key or a value of the wrong type.
 */
export function profileArgv(doc: Record<string, unknown>, name: string, file: string, options: readonly ProfileOption[]): string[] {
  const names = profileNamesOf(doc)
  for (const k of Object.keys(doc)) {
    if (!isTable(doc[k])) throw fail(file, `"${k}" is outside a profile`, `put it under a [name] table, e.g.\n[${name}]\n${k} = …`)
  }
  const table = doc[name]
  if (!isTable(table)) {
    const near = closest(name, names)
    throw new TunnelError('USAGE', `no profile "${name}" in ${file}`, {
      hint: near ? `did you mean ${near}?` : names.length ? `its profiles: ${names.join(', ')}` : `add one: [${name}] with remote = "…" and subnets = […]`,
    })
  }
  const where = `${file}: [${name}]`
  const byKey = new Map(options.map((o) => [o.key, o]))
  const args: string[] = []
  const subnets: string[] = []
  for (const [key, v] of Object.entries(table)) {
    if (key === SUBNETS) {
      for (const s of Array.isArray(v) ? v : [v]) subnets.push(word(where, key, s))
      continue
    }
    const opt = byKey.get(key)
    if (!opt) {
      const near = closest(key, [SUBNETS, ...byKey.keys()])
      throw fail(where, `unknown key "${key}"`, `${near ? `did you mean ${near}? ` : ''}keys are the long options without -- (subnet-tunnel --help), and subnets`)
    }
    switch (opt.kind) {
      case 'flag':
      case 'negated-flag':
        if (typeof v !== 'boolean') throw fail(where, `${key}: expected true or false, got ${describe(v)}`)
        if (opt.kind === 'flag' && v) args.push(`--${key}`)
        if (opt.kind === 'negated-flag' && !v) args.push(`--no-${key}`)
        break
      case 'count':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 3) throw fail(where, `${key}: expected a number from 0 to 3, got ${describe(v)}`)
        for (let i = 0; i < v; i++) args.push(`--${key}`)
        break
      case 'value':
        if (Array.isArray(v)) throw fail(where, `${key}: takes one value, got a list`)
        args.push(`--${key}`, word(where, key, v))
        break
      case 'list':
        for (const x of Array.isArray(v) ? v : [v]) args.push(`--${key}`, word(where, key, x))
        break
    }
  }
  return [...args, ...subnets]
}

/**
 * Reads the config file, refusing one that another user could have written: it can hold
 * options that run commands (`-o ProxyCommand=…`), so it must be ours (or root's) and writable
 * by nobody else. undefined when it does not exist.
 */
export function readConfigFile(file: string, uid: number | undefined = process.getuid?.()): string | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fail(file, `cannot read it: ${(e as Error).message}`)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw fail(file, 'not a regular file')
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) throw fail(file, `owned by uid ${st.uid}, not by you`, 'a config file can run commands (ProxyCommand): only yours is read')
    if ((st.mode & 0o022) !== 0) {
      throw fail(file, `writable by ${st.mode & 0o002 ? 'everyone' : 'its group'}`, `chmod go-w ${file} (a config file can run commands: ProxyCommand)`)
    }
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}
