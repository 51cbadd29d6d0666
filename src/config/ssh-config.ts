/**
 * Effective OpenSSH configuration for the -r destination. The primary source is `ssh -G`, which
 * evaluates Include, Match (including `Match exec`), Host aliases and token-expanded HostName
 * exactly as the user's ssh would; when no ssh binary exists we fall back to the ssh-config
 * package (ssh-config-fallback.ts). Both produce the same raw `key → values` map, which
 * toHostConfig() turns into an SshHostConfig.
 *
 * Our one deliberate default that differs from OpenSSH: ServerAliveInterval is 15 s (OpenSSH: 0,
 * off) unless the user sets it, because a tunnel must notice a dead bastion on its own. With
 * `ssh -G` a value of 0 cannot be told apart from "not set", so 0 is honoured only when it comes
 * from `-o ServerAliveInterval=0`; a config file that says 0 gets 15 s too.
 */
import { execFile } from 'node:child_process'
import * as os from 'node:os'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import type { SshHostConfig, SshRequest, StrictHostKeyChecking } from './ssh-config-types'
import { parseSshDestination, type SshDestination } from './ssh-destination'
import { checkSshUser } from './ssh-names'
import { computeWithParser, splitOption, type RawSshOptions } from './ssh-config-fallback'
import { ALGORITHM_OPTIONS, defaultsFrom, OPENSSH_DEFAULTS, userAlgorithms, type AlgorithmDefaults } from './ssh-algorithms'

export { splitOption, type RawSshOptions }
export { OPENSSH_DEFAULT_CIPHERS, userCiphers } from './ssh-algorithms'

export interface ResolveSshConfigOptions {
  /** ssh binary for `ssh -G`; "ssh" (from PATH) by default. A missing binary selects the fallback. */
  sshBinary?: string
  env?: NodeJS.ProcessEnv
  /** Home directory for `~` and %d; the user's passwd entry by default, as OpenSSH uses. */
  home?: string
  /** Receives ssh's warnings (e.g. an -i file that does not exist) and fallback notes. */
  log?: Logger
}

/** Our keepalive default, see the file comment. */
export const DEFAULT_SERVER_ALIVE_INTERVAL = 15

const CONFIG_HINT = 'check -o/-F and ~/.ssh/config; `ssh -G HOST` shows what ssh makes of them'
const OPTION_HINT = 'see man ssh_config for valid options and values'

/** Resolves the request to the configuration OpenSSH would use for it. */
export async function resolveSshConfig(req: SshRequest, opts: ResolveSshConfigOptions = {}): Promise<SshHostConfig> {
  const env = opts.env ?? process.env
  const home = opts.home ?? defaultHome()
  const dest = checkSshRequest(req)
  const port = dest.port ?? req.port
  const bin = opts.sshBinary ?? 'ssh'
  // The binary's defaults (a second `ssh -G`, cached) are asked for alongside the user's `ssh -G`
  // rather than after it: each is a process start, and start-up time is the slower of the two
  // (issue 18). Without a binary both fail at once, and the defaults go unused.
  const defaultsP = sshDefaults(bin, env)
  let raw: RawSshOptions | undefined = await runSshG(req, dest, port, bin, env, opts.log)
  const fromSshG = raw !== undefined
  if (!raw) {
    opts.log?.verbose('ssh', 'no ssh binary: reading ssh config with the built-in parser (Include is not followed)')
    raw = computeWithParser(req, dest, port, home)
  }
  const defaults = fromSshG ? await defaultsP : OPENSSH_DEFAULTS
  return toHostConfig(raw, { dest, home, env, explicitKeepalive: hasOption(req.options, 'serveraliveinterval'), fromSshG, defaults })
}

const defaultsCache = new Map<string, Promise<AlgorithmDefaults>>()

/**
 * The algorithm lists this ssh binary uses when nothing is configured (`ssh -G -F /dev/null`:
 * no user or system file), so a list `ssh -G` prints can be told apart from "not set". Once per
 * binary; OpenSSH 9.x's lists if it fails.
 */
function sshDefaults(bin: string, env: NodeJS.ProcessEnv): Promise<AlgorithmDefaults> {
  let p = defaultsCache.get(bin)
  if (!p) {
    p = new Promise((resolve) => {
      execFile(bin, ['-G', '-T', '-F', '/dev/null', '--', 'subnet-tunnel.invalid'], { env, timeout: 15_000, maxBuffer: 4 << 20 }, (err, stdout) =>
        resolve(defaultsFrom(err ? undefined : parseSshGOutput(String(stdout)))),
      )
    })
    defaultsCache.set(bin, p)
  }
  return p
}

/**
 * Checks every host and user name of a request that ssh would check (OpenSSH 9.6+: the
 * destination, -l/-o User, and -J/-o ProxyJump hops), before `ssh -G` or the parser fallback
 * sees them: both can hand them to a shell (%h, %n, %r in Match exec or ProxyCommand).
 * Returns the parsed destination; throws USAGE.
 */
export function checkSshRequest(req: SshRequest): SshDestination {
  const dest = parseSshDestination(req.destination)
  const jumps = (text: string, where: string): void => {
    if (text.trim().toLowerCase() === 'none') return
    for (const hop of text.split(',')) parseSshDestination(hop, where)
  }
  if (req.jump !== undefined) jumps(req.jump, '-J hop')
  for (const o of req.options) {
    const [k, v] = splitOption(o)
    if (k.toLowerCase() === 'user') checkSshUser(v, '-o User')
    else if (k.toLowerCase() === 'proxyjump') jumps(v, '-o ProxyJump hop')
  }
  return dest
}

function defaultHome(): string {
  try {
    return os.userInfo().homedir
  } catch {
    return os.homedir()
  }
}

/** Whether `-o NAME=…` / `-o "NAME …"` was given, case-insensitively. */
export function hasOption(options: readonly string[], name: string): boolean {
  return options.some((o) => splitOption(o)[0].toLowerCase() === name)
}

/** Builds the `ssh -G` argv (no shell involved) for a request. */
export function sshGArgs(req: SshRequest, dest: SshDestination, port: number | undefined): string[] {
  // -T only silences "Pseudo-terminal will not be allocated" on stderr.
  const args = ['-G', '-T']
  if (req.configFile !== undefined) args.push('-F', req.configFile)
  if (port !== undefined) args.push('-p', String(port))
  if (dest.user !== undefined) args.push('-l', dest.user)
  for (const i of req.identities) args.push('-i', i)
  if (req.jump !== undefined) args.push('-J', req.jump)
  for (const o of req.options) args.push('-o', o)
  // "--" keeps a host from ever being read as an option.
  args.push('--', dest.host)
  return args
}

/** Runs ssh -G; undefined when the binary does not exist. Throws SSH_CONFIG when ssh refuses. */
async function runSshG(
  req: SshRequest,
  dest: SshDestination,
  port: number | undefined,
  bin: string,
  env: NodeJS.ProcessEnv,
  log: Logger | undefined,
): Promise<RawSshOptions | undefined> {
  const args = sshGArgs(req, dest, port)
  const r = await new Promise<{ err: NodeJS.ErrnoException | null; stdout: string; stderr: string }>((resolve) => {
    // A timeout because `Match exec` runs user commands that could hang.
    execFile(bin, args, { env, timeout: 15_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) =>
      resolve({ err: err as NodeJS.ErrnoException | null, stdout: String(stdout), stderr: String(stderr) }),
    )
  })
  if (r.err && (r.err.code === 'ENOENT' || r.err.code === 'EACCES')) return undefined
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '')
  if (r.err) {
    const first = lines.find((l) => !/^warning:/i.test(l)) ?? lines[0] ?? r.err.message
    const badOption = /bad configuration option|unsupported option|bad .*(value|port|number)|missing argument|invalid/i.test(first)
    throw new TunnelError('SSH_CONFIG', `ssh -G: ${first}`, { hint: badOption ? OPTION_HINT : CONFIG_HINT, cause: r.err })
  }
  for (const l of lines) log?.warn('ssh', `ssh -G: ${l}`)
  return parseSshGOutput(r.stdout)
}

/** Keys whose single `ssh -G` line holds a space-separated list. */
const SPACE_LISTS = new Set(['userknownhostsfile', 'globalknownhostsfile'])

/** Parses `ssh -G` output: one lowercase `key value` per line, some keys repeated. */
export function parseSshGOutput(text: string): RawSshOptions {
  const raw: RawSshOptions = new Map()
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trimEnd())
    if (!m) continue
    const key = m[1]!.toLowerCase()
    // ssh -G prints list elements unquoted, so a path containing a space cannot be recovered here.
    const values = SPACE_LISTS.has(key) ? m[2]!.split(/\s+/) : [m[2]!]
    raw.set(key, [...(raw.get(key) ?? []), ...values])
  }
  return raw
}

interface MapContext {
  dest: SshDestination
  home: string
  env: NodeJS.ProcessEnv
  explicitKeepalive: boolean
  /** ssh -G already expanded tokens in the known-hosts paths; expanding again would eat a literal %. */
  fromSshG: boolean
  /** The algorithm lists in effect when nothing is configured (see ssh-algorithms.ts). */
  defaults?: AlgorithmDefaults
}

/** Turns raw options into SshHostConfig, expanding ~, ${ENV} and %-tokens where OpenSSH does. */
export function toHostConfig(raw: RawSshOptions, ctx: MapContext): SshHostConfig {
  const one = (k: string): string | undefined => raw.get(k)?.[0]
  const bool = (k: string, dflt: boolean): boolean => {
    const v = one(k)?.toLowerCase()
    return v === undefined ? dflt : v === 'yes' || v === 'true'
  }
  const num = (k: string, dflt: number): number => {
    const v = one(k)
    if (v === undefined || v === 'none') return dflt
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new TunnelError('SSH_CONFIG', `${k} "${v}" is not a number`, { hint: OPTION_HINT })
    return n
  }
  const alias = ctx.dest.host
  const hostName = one('hostname') ?? alias
  const port = num('port', 22)
  const user = one('user') ?? localUser()
  const proxyJumpText = one('proxyjump')
  const proxyJump = proxyJumpText && proxyJumpText !== 'none' ? proxyJumpText.split(',').map((s) => s.trim()).filter(Boolean) : []
  const hostKeyAlias = one('hostkeyalias')
  const tokens: Record<string, string> = {
    '%': '%',
    h: hostName,
    p: String(port),
    r: user,
    n: alias,
    u: localUser(),
    d: ctx.home,
    i: String(typeof process.getuid === 'function' ? process.getuid() : 0),
    l: os.hostname(),
    L: os.hostname().split('.')[0]!,
    k: hostKeyAlias ?? alias,
    j: proxyJump.join(','),
  }
  const path = (p: string): string => expandTilde(expandTokens(expandEnv(p, ctx.env), tokens), ctx.home)
  const knownPath = ctx.fromSshG ? (p: string): string => expandTilde(p, ctx.home) : path

  const interval = num('serveraliveinterval', 0)
  const proxyCommand = one('proxycommand')
  const agent = one('identityagent')
  const connectTimeout = one('connecttimeout')
  return {
    alias,
    hostName,
    port,
    user,
    identityFiles: (raw.get('identityfile') ?? []).map(path),
    identitiesOnly: bool('identitiesonly', false),
    identityAgent: resolveAgent(agent, ctx.env, path),
    userKnownHostsFiles: (raw.get('userknownhostsfile') ?? ['~/.ssh/known_hosts', '~/.ssh/known_hosts2']).map(knownPath),
    globalKnownHostsFiles: (raw.get('globalknownhostsfile') ?? ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']).map(knownPath),
    strictHostKeyChecking: parseStrict(one('stricthostkeychecking')),
    hashKnownHosts: bool('hashknownhosts', false),
    hostKeyAlias,
    // ProxyCommand is run by a shell later; only tokens are expanded (no ~: the shell does that).
    proxyCommand: proxyCommand && proxyCommand !== 'none' ? expandTokens(proxyCommand, tokens) : undefined,
    proxyJump,
    serverAliveInterval: interval === 0 && !ctx.explicitKeepalive ? DEFAULT_SERVER_ALIVE_INTERVAL : interval,
    serverAliveCountMax: num('serveralivecountmax', 3),
    connectTimeout: connectTimeout === undefined || connectTimeout === 'none' ? undefined : num('connecttimeout', 0),
    batchMode: bool('batchmode', false),
    pubkeyAuthentication: bool('pubkeyauthentication', true),
    passwordAuthentication: bool('passwordauthentication', true),
    kbdInteractiveAuthentication: bool('kbdinteractiveauthentication', true),
    certificateFiles: (raw.get('certificatefile') ?? []).map(path),
    numberOfPasswordPrompts: num('numberofpasswordprompts', 3),
    ...algorithmLists(raw, ctx.defaults ?? OPENSSH_DEFAULTS),
    ...controlPathOf(one('controlpath'), ctx.fromSshG),
  }
}

/** The algorithm lists the user set (undefined while the default is in effect). */
function algorithmLists(raw: RawSshOptions, defaults: AlgorithmDefaults): Pick<SshHostConfig, 'ciphers' | 'kexAlgorithms' | 'hostKeyAlgorithms' | 'macs' | 'pubkeyAcceptedAlgorithms'> {
  const [ciphers, kexAlgorithms, hostKeyAlgorithms, macs, pubkeyAcceptedAlgorithms] = ALGORITHM_OPTIONS.map((k) => {
    // The fallback sees the old name too (ssh -G prints the new one).
    const v = raw.get(k)?.[0] ?? (k === 'pubkeyacceptedalgorithms' ? raw.get('pubkeyacceptedkeytypes')?.[0] : undefined)
    return userAlgorithms(v, defaults[k])
  })
  return { ciphers, kexAlgorithms, hostKeyAlgorithms, macs, pubkeyAcceptedAlgorithms }
}

/**
 * The user's ControlPath, only as `ssh -G` prints it (tokens and ~ expanded by ssh itself); the
 * parser fallback runs only without an ssh binary, where no master could be reused anyway.
 */
function controlPathOf(value: string | undefined, fromSshG: boolean): { controlPath?: string } {
  if (!fromSshG || value === undefined || value === 'none' || !value.startsWith('/')) return {}
  return { controlPath: value }
}

/** IdentityAgent: "none" → no agent; the literal SSH_AUTH_SOCK → that env var; else a path. */
function resolveAgent(v: string | undefined, env: NodeJS.ProcessEnv, path: (p: string) => string): string | undefined {
  if (v === undefined || v === 'SSH_AUTH_SOCK') return env.SSH_AUTH_SOCK || undefined
  if (v === 'none') return undefined
  // "$NAME" names an environment variable too (ssh_config(5), IdentityAgent).
  if (/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(v)) return env[v.slice(1)] || undefined
  return path(v)
}

function parseStrict(v: string | undefined): StrictHostKeyChecking {
  switch (v?.toLowerCase()) {
    case undefined:
    case 'ask':
      return 'ask'
    case 'yes':
    case 'true':
      return 'yes'
    case 'no':
    case 'false':
    case 'off':
      return 'no'
    case 'accept-new':
      return 'accept-new'
    default:
      throw new TunnelError('SSH_CONFIG', `StrictHostKeyChecking "${v}" is not yes, no, accept-new or ask`, { hint: OPTION_HINT })
  }
}

function localUser(): string {
  try {
    return os.userInfo().username
  } catch {
    return process.env.USER ?? 'root'
  }
}

/** Replaces %x tokens; unknown tokens stay as written (OpenSSH would refuse them). */
export function expandTokens(s: string, tokens: Record<string, string>): string {
  return s.replace(/%(.)/g, (m, c: string) => tokens[c] ?? m)
}

/** `~` and `~/…` → home. (`~otheruser/` is left alone: we do not read other users' entries.) */
export function expandTilde(p: string, home: string): string {
  if (p === '~') return home
  if (p.startsWith('~/')) return home + p.slice(1)
  return p
}

/** `${NAME}` → environment value (OpenSSH 8.4+ accepts this in file paths). */
export function expandEnv(s: string, env: NodeJS.ProcessEnv): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, n: string) => env[n] ?? '')
}
