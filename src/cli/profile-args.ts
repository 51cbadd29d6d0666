/**
 * Arguments that come from files, expanded before parsing:
 *  - `@FILE` (sshuttle's argument files): replaced by the words of FILE, one or more per line;
 *    blank lines and lines starting with `#` are skipped; no quoting (a word is what is between
 *    spaces). Nested up to a few levels.
 *  - `up NAME`, `-c NAME`, `--profile NAME`: the profile's arguments (config/profiles.ts) go
 *    first, the command line's after them, so a value given on the command line wins and a
 *    repeatable option given there adds to the profile's.
 */
import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Command } from 'commander'
import { type ProfileOption, parseProfiles, profileArgv, profileNamesOf, readConfigFile } from '../config/profiles'
import { TunnelError } from '../errors'

/** `$SUBNET_TUNNEL_CONFIG`, else `$XDG_CONFIG_HOME/subnet-tunnel/config.toml` (~/.config by default). */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SUBNET_TUNNEL_CONFIG) return env.SUBNET_TUNNEL_CONFIG
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config')
  return path.join(base, 'subnet-tunnel', 'config.toml')
}

/** Profile names in the config file (none when it is missing or unreadable: for completion). */
export function profileNames(file: string = configPath()): string[] {
  try {
    const text = readConfigFile(file)
    return text === undefined ? [] : profileNamesOf(parseProfiles(text, file))
  } catch {
    return []
  }
}

const MAX_DEPTH = 4

/** Replaces each `@FILE` before `--` by the file's words. */
export function expandArgFiles(argv: readonly string[], depth = 0, readFile = (f: string) => fs.readFileSync(f, 'utf8')): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!
    if (t === '--') return [...out, ...argv.slice(i)]
    if (!t.startsWith('@') || t.length === 1) {
      out.push(t)
      continue
    }
    if (depth >= MAX_DEPTH) throw new TunnelError('USAGE', `${t}: argument files nested more than ${MAX_DEPTH} deep`, { hint: 'an argument file that names itself?' })
    let text: string
    try {
      text = readFile(t.slice(1))
    } catch (e) {
      throw new TunnelError('USAGE', `${t}: cannot read the argument file: ${(e as Error).message}`, {
        hint: 'an argument starting with @ names a file of arguments, one or more per line',
      })
    }
    const words = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .flatMap((l) => l.split(/\s+/))
    out.push(...expandArgFiles(words, depth + 1, readFile))
  }
  return out
}

/** Profile keys for every long option of the parser (help, version and the profile itself excluded). */
export function profileOptions(program: Command): ProfileOption[] {
  const out: ProfileOption[] = []
  for (const o of program.options) {
    const long = o.long?.replace(/^--/, '')
    if (!long || ['help', 'version', 'profile'].includes(long)) continue
    if (o.negate) out.push({ key: long.replace(/^no-/, ''), kind: 'negated-flag' })
    else if (long === 'verbose' || long === 'quiet') out.push({ key: long, kind: 'count' })
    else if (!o.required && !o.optional) out.push({ key: long, kind: 'flag' })
    else out.push({ key: long, kind: Array.isArray(o.defaultValue) ? 'list' : 'value' })
  }
  return out
}

/**
 * `@FILE` expansion, then the profile named by `up NAME` / `-c NAME` / `--profile NAME`
 * spliced in front. Returns the arguments to parse and the profile's name.
 */
export function expandProfile(argvIn: readonly string[], program: Command, file: string = configPath()): { argv: string[]; profile?: string } {
  let argv = expandArgFiles(argvIn)
  let name: string | undefined
  if (argv[0] === 'up') {
    name = argv[1]
    if (name === undefined || name.startsWith('-')) {
      const names = profileNames(file)
      throw new TunnelError('USAGE', 'up needs a profile name', {
        hint: names.length ? `profiles in ${file}: ${names.join(', ')}` : `define one in ${file} (see the Profiles section of the README)`,
      })
    }
    argv = argv.slice(2)
  }
  for (let i = 0; i < (argv.indexOf('--') < 0 ? argv.length : argv.indexOf('--')); i++) {
    const t = argv[i]!
    const inline = t.startsWith('--profile=') ? t.slice('--profile='.length) : t.startsWith('-c') && t.length > 2 ? t.slice(2) : undefined
    if (t !== '-c' && t !== '--profile' && inline === undefined) continue
    if (name !== undefined) throw new TunnelError('USAGE', 'one profile at a time', { hint: 'subnet-tunnel up NAME [more options]' })
    name = inline ?? argv[i + 1]
    if (name === undefined) throw new TunnelError('USAGE', `${t} needs a profile name`, { hint: 'subnet-tunnel -c work, or subnet-tunnel up work' })
    argv = [...argv.slice(0, i), ...argv.slice(i + (inline === undefined ? 2 : 1))]
    i--
  }
  if (name === undefined) return { argv }
  const text = readConfigFile(file)
  if (text === undefined) {
    throw new TunnelError('USAGE', `no config file ${file} (for profile "${name}")`, {
      hint: 'create it with a [NAME] table per profile (see the Profiles section of the README), or set SUBNET_TUNNEL_CONFIG',
    })
  }
  return { argv: [...profileArgv(parseProfiles(text, file), name, file, profileOptions(program)), ...argv], profile: name }
}
