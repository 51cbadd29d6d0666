/**
 * `--auto-nets`, the bastion side: the one command we run on the bastion (over an exec channel)
 * to learn its routes, and the parser of what comes back. Pure: no I/O. auto-nets.ts chooses
 * which of the routes to tunnel.
 *
 * The command prints each tool's output after a marker line, so the parser knows which format
 * each part is in. Every tool is run: no shell control flow is needed (the account's login shell
 * may be sh, bash, zsh, csh, fish or busybox ash), and the parser takes, per family, the first
 * section that gave routes (iproute2 first: it alone tells route types and `src`).
 *
 * The output is untrusted (the far side is an attacker in our threat model): it is bounded,
 * read line by line, each line either parses or is skipped, addresses are re-parsed by cidr.ts,
 * and nothing from it is ever passed to a shell. A lying bastion can only choose which networks
 * we tunnel *to it*, which it could do anyway by routing them; auto-nets.ts refuses the default
 * route and too-broad networks, and the user's excludes still win.
 */
import ipaddr from 'ipaddr.js'
import { TunnelError } from '../errors'
import { parseIpRoutes } from './remote-routes-ip'
import { parseRouteTables } from './remote-routes-table'
import { addOnce, parseIp, splitLines, tokens, type Line, type ParsedRoutes, type RemoteRoute } from './remote-routes-lines'

export type { RemoteRoute, RouteFormat, RouteKind } from './remote-routes-lines'

/** Prefix of the marker lines; a line "@@subnet-tunnel:NAME" starts section NAME. */
export const ROUTES_MARKER = '@@subnet-tunnel:'

/** The sections, in the order the command prints them. */
export type RouteSection = 'conn' | 'ip4' | 'ip6' | 'netstat' | 'route' | 'route6'

/**
 * Tools by section. `printenv SSH_CONNECTION` gives the addresses of this very connection as
 * the bastion sees them ("client port server port"): the server address is where it was
 * reached, which we may not know ourselves (through a jump host). `netstat -rn` prints both
 * families on BSD and macOS, IPv4 on Linux; `route -n -A inet6` is the IPv6 table of Linux
 * net-tools and busybox. (`netstat -rn -f inet6` would add nothing: BSD already prints both
 * families, and Linux netstat takes -f for --fib and prints IPv4 again.)
 */
const TOOLS: readonly (readonly [RouteSection, string])[] = [
  ['conn', 'printenv SSH_CONNECTION'],
  ['ip4', 'ip -4 route show table main'],
  ['ip6', 'ip -6 route show table main'],
  ['netstat', 'netstat -rn'],
  ['route', 'route -n'],
  ['route6', 'route -n -A inet6'],
]

/**
 * A fixed PATH with the system directories (non-root accounts often lack /sbin and /usr/sbin,
 * where route and older ip live; NixOS keeps them in /run/current-system/sw/bin) and LC_ALL=C
 * (net-tools translates its headers). Set through env(1), not `VAR=value cmd`, which csh lacks.
 */
const ENV = 'env LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin:/run/current-system/sw/bin'

/**
 * The command line for the exec channel. A constant: nothing from the user or the bastion is in
 * it. It uses only words and `;` (no quotes, variables, redirections or `||`), so every common
 * login shell runs it the same way, csh and fish included. A tool that is missing or fails writes
 * to stderr, which the channel carries separately, and leaves its section empty.
 */
export const BASTION_ROUTES_COMMAND: string = [
  ...TOOLS.map(([section, tool]) => `echo ${ROUTES_MARKER}${section}; ${ENV} ${tool}`),
  `echo ${ROUTES_MARKER}end`,
].join('; ')

/** How much output to read (runRemote's maxBytes): a few thousand routes. Longer is cut. */
export const MAX_ROUTES_OUTPUT = 512 * 1024

/** This SSH connection as the bastion sees it (`SSH_CONNECTION`), addresses re-parsed. */
export interface SshConnectionAddresses {
  /** Our address as the bastion sees it (after any NAT). */
  readonly client: string
  /** The bastion's address the connection arrived at (behind a NAT: not the one we dialled). */
  readonly server: string
}

/** The bastion's routes, as far as its output told us. */
export interface BastionRoutes {
  /** IPv4 routes of the first section that had some, then the IPv6 ones likewise. */
  readonly routes: readonly RemoteRoute[]
  /** The bastion's own addresses (route `src`, local routes), from every section. */
  readonly ownAddresses: readonly string[]
  readonly sshConnection: SshConnectionAddresses | undefined
  /** Which section each family came from (undefined: none had routes of that family). */
  readonly sources: { readonly 4: RouteSection | undefined; readonly 6: RouteSection | undefined }
  /** Lines in the chosen sections that were neither a header nor a route. */
  readonly ignoredLines: number
  /** The output or a section was longer than we read: the list may be incomplete. */
  readonly truncated: boolean
}

/** Preference per family: iproute2, then BSD/Linux netstat, then route. */
const PREFERENCE: Readonly<Record<4 | 6, readonly RouteSection[]>> = {
  4: ['ip4', 'netstat', 'route'],
  6: ['ip6', 'netstat', 'route6'],
}

/**
 * Parses the output of BASTION_ROUTES_COMMAND. Text before the first marker (a login banner,
 * rc-file noise) and unknown sections are ignored. Throws REMOTE_EXEC when no section had a
 * route: the account cannot run the tools (a forced command, `restrict`, a non-POSIX shell).
 */
export function parseBastionRoutes(output: string): BastionRoutes {
  const truncatedInput = output.length > MAX_ROUTES_OUTPUT
  const sections = splitSections(truncatedInput ? output.slice(0, MAX_ROUTES_OUTPUT) : output)
  const parsed = new Map<RouteSection, ParsedRoutes>()
  for (const [name, lines] of sections) {
    if (name === 'ip4' || name === 'ip6') parsed.set(name, parseIpRoutes(lines, name === 'ip4' ? 4 : 6))
    else if (name !== 'conn') parsed.set(name, parseRouteTables(lines))
  }
  const routes: RemoteRoute[] = []
  const ownAddresses: string[] = []
  const sources: { 4: RouteSection | undefined; 6: RouteSection | undefined } = { 4: undefined, 6: undefined }
  let ignoredLines = 0
  let truncated = truncatedInput
  for (const family of [4, 6] as const) {
    for (const name of PREFERENCE[family]) {
      const p = parsed.get(name)
      const mine = p?.routes.filter((r) => r.net.family === family) ?? []
      if (!p || mine.length === 0) continue
      routes.push(...mine)
      sources[family] = name
      ignoredLines += p.ignoredLines
      truncated ||= p.truncated
      break
    }
  }
  for (const p of parsed.values()) for (const a of p.ownAddresses) addOnce(ownAddresses, a)
  if (routes.length === 0) {
    throw new TunnelError('REMOTE_EXEC', 'auto-nets: the bastion printed no routing table we can read', {
      hint: 'the account may not run commands (ForceCommand, restrict) or lack ip/netstat/route: give the subnets instead',
    })
  }
  const conn = sections.get('conn')
  return {
    routes,
    ownAddresses,
    sshConnection: conn ? parseSshConnection(conn) : undefined,
    sources,
    ignoredLines,
    truncated,
  }
}

/** Splits the output at marker lines; a repeated section keeps its first occurrence. */
function splitSections(output: string): Map<RouteSection, Line[]> {
  const sections = new Map<RouteSection, Line[]>()
  let current: Line[] | undefined
  for (const line of splitLines(output)) {
    // indexOf, not startsWith: rc-file output without a final newline runs into the first marker.
    const at = line.text.indexOf(ROUTES_MARKER)
    const marker = at < 0 ? undefined : line.text.slice(at + ROUTES_MARKER.length)
    if (marker === undefined) {
      current?.push(line)
      continue
    }
    // "end" and unknown names close the section: what follows is not ours.
    const name = TOOLS.find(([s]) => s === marker)?.[0]
    current = name !== undefined && !sections.has(name) ? [] : undefined
    if (name !== undefined && current) sections.set(name, current)
  }
  return sections
}

/** "192.0.2.7 50022 203.0.113.10 22" → client and server addresses; undefined if malformed. */
function parseSshConnection(lines: readonly Line[]): SshConnectionAddresses | undefined {
  const first = lines.find((l) => l.text !== '')
  const t = first ? tokens(first.text) : []
  if (t.length !== 4) return undefined
  const client = unmapped(parseIp(t[0]))
  const server = unmapped(parseIp(t[2]))
  return client !== undefined && server !== undefined ? { client, server } : undefined
}

/** sshd on a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: the IPv4 address is meant. */
function unmapped(address: string | undefined): string | undefined {
  return address === undefined ? undefined : ipaddr.process(address).toString()
}
