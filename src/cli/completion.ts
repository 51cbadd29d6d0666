/**
 * `subnet-tunnel completion bash|zsh|fish`: a completion script generated from the parser's own
 * option table (args.ts), so it offers exactly what --help lists. Profile names after `up` and
 * `-c` come from `subnet-tunnel completion profiles` at completion time.
 */
import type { Command, Option } from 'commander'
import { TunnelError } from '../errors'
import { programForDocs } from './args'
import { profileNames } from './profile-args'

/** Values worth offering for some options. */
const CHOICES: Readonly<Record<string, readonly string[]>> = {
  '--method': ['auto', 'nft', 'nat', 'tun', 'pf'],
  '--ssh-engine': ['auto', 'openssh', 'builtin'],
  '--tun-engine': ['builtin', 'tun2socks', 'hev-socks5-tunnel', 'sing-box'],
}
const FILE_ARGS = new Set(['--identity', '--ssh-config', '--pidfile', '--audit-log', '--log-file'])
const HOST_ARGS = new Set(['--remote', '--jump'])
const PROFILE_ARGS = new Set(['--profile'])

interface Opt {
  readonly short?: string
  readonly long: string
  readonly value: boolean
  readonly description: string
}

function optionsOf(cmd: Command): Opt[] {
  return cmd.options
    .filter((o: Option) => o.long !== undefined && !o.hidden)
    .map((o: Option) => ({ ...(o.short && { short: o.short }), long: o.long!, value: o.required || o.optional, description: o.description }))
}

interface Cmd {
  readonly name: string
  readonly description: string
  /** Its own options (`status --json`, `stop --all`). */
  readonly options: readonly string[]
}

function commandsOf(program: Command): Cmd[] {
  return [
    { name: 'up', description: 'start a profile from the config file', options: [] },
    ...program.commands.map((c) => ({ name: c.name(), description: c.description(), options: optionsOf(c).map((o) => o.long) })),
    { name: 'help', description: 'show the help of a command', options: [] },
  ]
}

const SHELLS = ['bash', 'zsh', 'fish'] as const

export function completionScript(shell: string, program: Command = programForDocs('')): string {
  const opts = optionsOf(program)
  const cmds = commandsOf(program)
  switch (shell) {
    case 'bash':
      return bash(opts, cmds)
    case 'zsh':
      return zsh(opts, cmds)
    case 'fish':
      return fish(opts, cmds)
  }
  throw new TunnelError('USAGE', `completion: unknown shell "${shell}"`, { hint: `one of ${SHELLS.join(', ')}, e.g. subnet-tunnel completion bash` })
}

/** `completion SHELL` prints the script; `completion profiles` the profile names (for the scripts). */
export function runCompletion(shell: string): number {
  if (shell === 'profiles') {
    process.stdout.write(profileNames().map((n) => n + '\n').join(''))
    return 0
  }
  process.stdout.write(completionScript(shell))
  return 0
}

function bash(opts: readonly Opt[], cmds: readonly Cmd[]): string {
  const words = opts.flatMap((o) => [o.short, o.long].filter((x): x is string => x !== undefined))
  const flag = (set: ReadonlySet<string>): string => opts.filter((o) => set.has(o.long)).flatMap((o) => [o.short, o.long].filter(Boolean)).join('|')
  const choiceCases = Object.entries(CHOICES)
    .map(([long, values]) => `    ${flag(new Set([long]))}) COMPREPLY=($(compgen -W '${values.join(' ')}' -- "$cur")); return ;;`)
    .join('\n')
  const takesValue = opts.filter((o) => o.value).flatMap((o) => [o.short, o.long].filter(Boolean)).join('|')
  const subOptions = cmds
    .filter((c) => c.options.length > 0)
    .map((c) => `    ${c.name}) COMPREPLY=($(compgen -W '${c.options.join(' ')}' -- "$cur")); return ;;`)
    .join('\n')
  return `# bash completion for subnet-tunnel: source it, or save it as
# /usr/share/bash-completion/completions/subnet-tunnel
_subnet_tunnel() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  case "$prev" in
${choiceCases}
    ${flag(FILE_ARGS)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${flag(HOST_ARGS)}) COMPREPLY=($(compgen -A hostname -- "$cur")); return ;;
    up|${flag(PROFILE_ARGS)}) COMPREPLY=($(compgen -W "$(subnet-tunnel completion profiles 2>/dev/null)" -- "$cur")); return ;;
    completion) COMPREPLY=($(compgen -W '${SHELLS.join(' ')}' -- "$cur")); return ;;
    ${takesValue}) return ;;
  esac
  if [[ $cur == -* ]]; then
    case "\${COMP_WORDS[1]}" in
${subOptions}
    esac
    COMPREPLY=($(compgen -W '${words.join(' ')} -h --help' -- "$cur"))
  elif ((COMP_CWORD == 1)); then
    COMPREPLY=($(compgen -W '${cmds.map((c) => c.name).join(' ')}' -- "$cur"))
  fi
}
complete -F _subnet_tunnel subnet-tunnel
`
}

/** Text inside zsh's [...] and '...'. */
const zq = (s: string): string => s.replace(/'/g, `'\\''`).replace(/([[\]:])/g, '\\$1')

function zsh(opts: readonly Opt[], cmds: readonly Cmd[]): string {
  const spec = (o: Opt): string => {
    const action = CHOICES[o.long]
      ? `:value:(${CHOICES[o.long]!.join(' ')})`
      : FILE_ARGS.has(o.long)
        ? ':file:_files'
        : HOST_ARGS.has(o.long)
          ? ':host:_hosts'
          : PROFILE_ARGS.has(o.long)
            ? ':profile:_subnet_tunnel_profiles'
            : o.value
              ? ':value: '
              : ''
    const names = o.short ? `{${o.short},${o.long}}` : o.long
    return `    ${names}'[${zq(o.description)}]${action}'`
  }
  return `#compdef subnet-tunnel
# zsh completion for subnet-tunnel: save as _subnet-tunnel in a directory of $fpath
_subnet_tunnel_profiles() {
  local -a profiles
  profiles=(\${(f)"$(subnet-tunnel completion profiles 2>/dev/null)"})
  compadd -a profiles
}
_subnet_tunnel() {
  local -a commands
  commands=(
${cmds.map((c) => `    '${c.name}:${zq(c.description)}'`).join('\n')}
  )
  _arguments -s \\
${opts.map((o) => spec(o) + ' \\').join('\n')}
    '*::argument:->args'
  if [[ $state == args ]]; then
    if ((CURRENT == 1)); then _describe command commands
    elif [[ $words[1] == up ]]; then _subnet_tunnel_profiles
    elif [[ $words[1] == completion ]]; then compadd ${SHELLS.join(' ')}
${cmds
  .filter((c) => c.options.length > 0)
  .map((c) => `    elif [[ $words[1] == ${c.name} ]]; then compadd -- ${c.options.join(' ')}`)
  .join('\n')}
    fi
  fi
}
compdef _subnet_tunnel subnet-tunnel
`
}

/** Text inside fish's '...'. */
const fq = (s: string): string => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")

function fish(opts: readonly Opt[], cmds: readonly Cmd[]): string {
  const lines = [
    '# fish completion for subnet-tunnel: save as ~/.config/fish/completions/subnet-tunnel.fish',
    'complete -c subnet-tunnel -f',
    ...cmds.map((c) => `complete -c subnet-tunnel -n __fish_use_subcommand -a ${c.name} -d '${fq(c.description)}'`),
    "complete -c subnet-tunnel -n '__fish_seen_subcommand_from up' -a '(subnet-tunnel completion profiles 2>/dev/null)'",
    `complete -c subnet-tunnel -n '__fish_seen_subcommand_from completion' -a '${SHELLS.join(' ')}'`,
    ...cmds.flatMap((c) => c.options.map((o) => `complete -c subnet-tunnel -n '__fish_seen_subcommand_from ${c.name}' -l ${o.slice(2)}`)),
    ...opts.map((o) => {
      const names = `${o.short ? `-s ${o.short.slice(1)} ` : ''}-l ${o.long.slice(2)}`
      const arg = CHOICES[o.long]
        ? ` -x -a '${CHOICES[o.long]!.join(' ')}'`
        : FILE_ARGS.has(o.long)
          ? ' -r -F'
          : HOST_ARGS.has(o.long)
            ? " -x -a '(__fish_print_hostnames)'"
            : PROFILE_ARGS.has(o.long)
              ? " -x -a '(subnet-tunnel completion profiles 2>/dev/null)'"
              : o.value
                ? ' -x'
                : ''
      return `complete -c subnet-tunnel ${names}${arg} -d '${fq(o.description)}'`
    }),
  ]
  return lines.join('\n') + '\n'
}
