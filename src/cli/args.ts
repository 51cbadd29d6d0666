import { Command, CommanderError, Option } from 'commander'
import { TunnelError } from '../errors'
import { DEFAULT_CONNECTIONS_MAX, type TunnelConfig } from '../tunnel/config'
import { checkArgv, type OptionShape } from './argv-checks'
import { configPath, expandProfile } from './profile-args'
import type { SecretEnv } from './secret-env'

/** The tunnel command: what the tunnel should do (TunnelConfig), and how the CLI runs it. */
export interface TunnelArgs extends TunnelConfig {
  readonly pidfile?: string
  /** -f: go to the background once up. */
  readonly background: boolean
  /** `exec -- CMD ARGS…`: run CMD with the tunnel up, then tear down and exit with its code. */
  readonly exec?: string[]
  readonly verbose: number
  readonly quiet: number
  /** The profile it came from (`up NAME`, `-c NAME`): status shows it, `stop NAME` finds it. */
  readonly profile?: string
  /** --log-file (with -f: a default under $XDG_STATE_HOME). */
  readonly logFile?: string
  /** --force: start even when another instance here captures the same subnets. */
  readonly force: boolean
}

export type ParsedCommand =
  | { kind: 'tunnel'; args: TunnelArgs }
  | { kind: 'cleanup'; verbose: number }
  | { kind: 'sudoers'; user?: string }
  | { kind: 'demo'; keep: boolean; install: boolean }
  | { kind: 'status'; json: boolean; all: boolean }
  | { kind: 'routes'; json: boolean }
  | { kind: 'stop'; target?: string; all: boolean }
  | { kind: 'completion'; shell: string }
  | { kind: 'version' } // -V / --version: main prints it (engine detection is asynchronous)
  | { kind: 'exit'; code: number } // --help or the short usage already printed

const collect = (v: string, prev: string[]) => [...prev, v]
const count = (_: string, prev: number) => prev + 1
const commaList = (v: string, prev: string[]) => [...prev, ...v.split(',').map((x) => x.trim()).filter(Boolean)]

function positiveInt(option: string) {
  return (v: string): number => {
    const n = Number(v)
    if (!/^\d+$/.test(v) || n < 1 || n > 64) {
      throw new TunnelError('USAGE', `${option}: "${v}" is not a number from 1 to 64`, { hint: `e.g. ${option} 4` })
    }
    return n
  }
}

function graceSeconds(v: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || n > 3600) {
    throw new TunnelError('USAGE', `--route-grace: "${v}" is not a number of seconds from 0 to 3600`, { hint: 'e.g. --route-grace 60' })
  }
  return n
}

function portNumber(v: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) {
    throw new TunnelError('USAGE', `invalid port "${v}"`, { hint: 'a port is a number from 1 to 65535' })
  }
  return n
}

/** --ssh-engine, whose default may come from $SUBNET_TUNNEL_SSH_ENGINE (commander checks only typed values). */
function sshEngineOf(v: unknown): TunnelArgs['sshEngine'] {
  if (v === 'auto' || v === 'openssh' || v === 'builtin') return v
  throw new TunnelError('USAGE', `SUBNET_TUNNEL_SSH_ENGINE: "${String(v)}" is not auto, openssh or builtin`, { hint: 'unset it, or set one of those' })
}

/** The end of --help (and the man page's EXAMPLES and ENVIRONMENT). */
export const EPILOG = `
Examples:
  subnet-tunnel -r user@bastion 10.0.0.0/16
  subnet-tunnel -r prod-bastion 10.0.0.0/8 fd00::/48 -x 10.0.99.0/24
  subnet-tunnel -J jump.example.com -r admin@10.1.0.5 10.1.0.0/16
  subnet-tunnel -r bastion 10.0.0.0/16 --dns --dns-domain corp.internal
  subnet-tunnel -r bastion --dns-domain corp.internal --route-by-name   only names known
  subnet-tunnel -r bastion --auto-nets --dns-domain auto                 what the bastion reaches
  subnet-tunnel routes             what is tunnelled now, and why
  subnet-tunnel -r bastion -D 1080                 like ssh -N -D 1080, no root needed
  subnet-tunnel -r bastion -L 5432:db.internal:5432 exec -- pg_dump -h 127.0.0.1 app
  subnet-tunnel -r bastion 10.0.0.0/16 exec --only -- ./ci-step.sh   only this job is tunnelled
  subnet-tunnel -r bastion-a 10.0.0.0/16 10.1.0.0/16=bastion-b
  subnet-tunnel status
  sudo subnet-tunnel cleanup       remove rules left by instances that died
  subnet-tunnel sudoers            sudoers drop-in for password-less use (checks the install first)
  sudo subnet-tunnel demo          see it work in a throwaway network (no bastion needed)

Environment:
  SUBNET_TUNNEL_REMOTE       default for -r
  SUBNET_TUNNEL_SSH_ENGINE   default for --ssh-engine (auto, openssh, builtin)
  SUBNET_TUNNEL_CONFIG       the profiles file (default ~/.config/subnet-tunnel/config.toml)
  SUBNET_TUNNEL_PROXY_AUTH   USER:PASS for --proxy-auth; read at start, then removed (no child sees it)

Docs, limits and troubleshooting: README.md`

/** Builds the parser; `write` receives help/version text (stdout) and usage errors (stderr). */
function buildProgram(
  version: string,
  out: ArgsOutput,
  result: { cmd?: ParsedCommand },
  secrets: SecretEnv,
): Command {
  const program = new Command('subnet-tunnel')
  program
    .usage('[options] -r [user@]host[:port] [<subnet>[=remote]...] [exec -- CMD ARGS...]')
    .description('Reach private subnets through any SSH server that allows TCP forwarding.')
    .argument('[subnet...]', 'CIDR (IPv4 or IPv6), single IP, or host name (all its addresses); 0/0 and ::/0 allowed; CIDR=REMOTE sends it through another bastion')
    .option('-r, --remote <dest>', 'SSH destination [user@]host[:port] or a Host alias from ~/.ssh/config')
    .option('-c, --profile <name>', 'start the profile NAME of the config file (~/.config/subnet-tunnel/config.toml); options given here add to it or override it')
    .option('-x, --exclude <cidr>', 'never tunnel this (repeatable)', collect, [])
    .option('-i, --identity <file>', 'private key, like ssh -i (repeatable)', collect, [])
    .option('-F, --ssh-config <file>', 'ssh config file, like ssh -F')
    .option('-J, --jump <hops>', 'jump hosts, like ssh -J: [user@]host[:port],…')
    .option('-p, --port <n>', 'SSH port, like ssh -p', portNumber)
    .option('-o, --ssh-option <k=v>', 'OpenSSH option, like ssh -o (repeatable)', collect, [])
    .addOption(
      new Option('--method <name>', 'redirection backend: nft, nat (iptables), pf (macOS), tun (a TUN device and routes) or auto (default: auto, nft when usable, else nat)')
        .choices(['auto', 'nat', 'nft', 'pf', 'tun'])
        .default('auto'),
    )
    .addOption(
      new Option('--ssh-engine <name>', "who speaks SSH: openssh (your ssh as ControlMaster: its config, certificates, agent, 2FA), builtin (ssh2, no OpenSSH needed), or auto (default: $SUBNET_TUNNEL_SSH_ENGINE, else auto)")
        .choices(['auto', 'openssh', 'builtin'])
        .default(process.env.SUBNET_TUNNEL_SSH_ENGINE || 'auto', '$SUBNET_TUNNEL_SSH_ENGINE or auto'),
    )
    .option('--tun-engine <name>', 'with --method tun: builtin, tun2socks, hev-socks5-tunnel, sing-box, or a program path (default: builtin)')
    .option('--listen <[ip:]port>', 'transparent listener (default: 127.0.0.1, a free port)')
    .option('--pidfile <file>', 'write the process id here once the tunnel is up')
    .option('--dns', "capture DNS sent to this machine's nameservers and answer it through the tunnel")
    .option('--ns-hosts <ip,...>', 'capture DNS sent to these servers instead (implies --dns)', commaList, [])
    .option('--to-ns <ip[:port]>', "remote resolver (repeatable); default: the bastion's /etc/resolv.conf", collect, [])
    .option('--dns-domain <suffix>', "split DNS: only names under this suffix go through the tunnel (repeatable); `auto`: the bastion's resolv.conf search/domain", collect, [])
    .option('--route-by-name', 'with --dns-domain: tunnel every address those names resolve to (learnt from the answers, until their TTL runs out); no subnet needed; Linux (nft, nat, tun)')
    .option('--route-grace <seconds>', 'with --route-by-name: keep a learnt address this long after its TTL (default 60; longer while connections to it are open)', graceSeconds)
    .option('--auto-nets', "also tunnel the networks the bastion routes (read with ip route / netstat over SSH; not its link to us, not this machine's own)")
    .option('--no-dns-cache', 'do not cache DNS answers')
    .option('--dns-all-families', 'keep AAAA answers when only IPv4 subnets are tunnelled (and A answers when only IPv6 ones are); default: answer those queries with no address, so clients do not try an address the tunnel does not carry')
    .option('-D, --socks <[bind:]port>', 'SOCKS5 proxy, like ssh -D (repeatable); names resolve on the remote side', collect, [])
    .option('--http-proxy <[bind:]port>', 'HTTP proxy: CONNECT and plain requests (repeatable)', collect, [])
    .option('--proxy-auth <user:pass>', 'require this user and password on the proxies; prefer $SUBNET_TUNNEL_PROXY_AUTH (other users can read command lines)')
    .option('--allow <cidr>', 'clients allowed on proxies/forwards bound off loopback, and served by --gateway (repeatable)', collect, [])
    .option('-L, --local-forward <spec>', 'like ssh -L [bind:]port:host:hostport (repeatable)', collect, [])
    .option('-R, --remote-forward <spec>', 'like ssh -R [bind:]port:host:hostport (repeatable)', collect, [])
    .option('-N', 'accepted for ssh compatibility (subnet-tunnel never runs a remote command)')
    .option('-f, --background', 'go to the background once the tunnel is up, like ssh -f (logs to --log-file)')
    .option('--log-file <file>', 'also write the log here, with timestamps (mode 0600, kept under 1 MB plus one older file); default with -f: $XDG_STATE_HOME/subnet-tunnel/NAME.log')
    .option('--force', 'start even when another instance in this network namespace captures the same subnets')
    .option('--audit-log <file>', 'append one JSON line per connection (mode 0600)')
    .option('--audit-dns', 'with --audit-log and --dns: also one line per DNS query')
    .option('--gateway', 'also capture traffic from other hosts routed through this one (containers, VMs); with several interfaces, say which with --gateway-if or --allow')
    .option('--gateway-if <iface,...>', 'gateway for traffic arriving on these interfaces only (repeatable; implies --gateway)', commaList, [])
    .option('--owner-only', "capture only your own connections (default: every local user's connections to the subnets)")
    .option('--connections <n>', 'SSH connections per bastion to open at start (default: 1)', positiveInt('--connections'), 1)
    .option('--connections-max <n>', `most SSH connections per bastion; more open when one is full (default: ${DEFAULT_CONNECTIONS_MAX})`, positiveInt('--connections-max'), DEFAULT_CONNECTIONS_MAX)
    .option('--no-forward-check', 'skip the start-up check that the bastion permits forwarding (one probe channel to its 127.0.0.1:1); for a bastion that permits only some destinations (permitopen)')
    .option('--only', 'with exec: capture only the command and its children (a cgroup v2 of our own; Linux, nft, nat or tun), nothing else on this machine')
    .option('--fail-closed', 'while SSH is down, and after exit until `subnet-tunnel cleanup`, the kernel refuses connections to the subnets instead of sending them in the clear (Linux)')
    .option('--no-net-watch', 'do not redial at once when the route to the SSH server changes or the machine resumes (keepalive alone notices)')
    .option('-v, --verbose', 'more output (repeat for debug)', count, 0)
    .option('-q, --quiet', 'only warnings and errors (repeat: errors only)', count, 0)
    .option('-V, --version', 'print the version, node, and the SSH engines and methods available here')
    .helpOption('-h, --help', 'show this help')
    .helpCommand('help [command]', 'show the help of a command')
    .addHelpText('after', EPILOG)
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .action((operands: string[], o: Record<string, unknown>) => {
      if (o.version === true) {
        result.cmd = { kind: 'version' }
        return
      }
      // expandProfile took every plain -c/--profile out before parsing; one still here came in a
      // cluster (-vc work) and would be silently ignored.
      if (o.profile !== undefined) {
        throw new TunnelError('USAGE', `-c ${String(o.profile)} inside a group of flags`, { hint: `give it on its own: -c ${String(o.profile)} (or: subnet-tunnel up ${String(o.profile)})` })
      }
      // `… exec -- CMD ARGS…`: everything after the word exec is the command.
      const at = operands.indexOf('exec')
      const subnets = at < 0 ? operands : operands.slice(0, at)
      const exec = at < 0 ? undefined : operands.slice(at + 1)
      if (exec !== undefined && exec.length === 0) {
        throw new TunnelError('USAGE', 'exec needs a command', { hint: 'subnet-tunnel -r bastion 10.0.0.0/16 exec -- psql -h 10.0.1.20' })
      }
      if (o.only === true && exec === undefined) {
        throw new TunnelError('USAGE', '--only goes with exec: it captures the command it runs', { hint: 'subnet-tunnel -r bastion 10.0.0.0/16 exec --only -- psql -h 10.0.1.20' })
      }
      result.cmd = {
        kind: 'tunnel',
        args: {
          remote: (o.remote as string | undefined) ?? process.env.SUBNET_TUNNEL_REMOTE ?? '',
          subnets,
          exclude: o.exclude as string[],
          identity: o.identity as string[],
          sshConfig: o.sshConfig as string | undefined,
          jump: o.jump as string | undefined,
          port: o.port as number | undefined,
          sshOption: o.sshOption as string[],
          method: o.method as TunnelArgs['method'],
          sshEngine: sshEngineOf(o.sshEngine),
          ...(o.tunEngine !== undefined && { tunEngine: o.tunEngine as string }),
          listen: o.listen as string | undefined,
          pidfile: o.pidfile as string | undefined,
          dns: {
            enabled: o.dns === true || (o.nsHosts as string[]).length > 0 || (o.dnsDomain as string[]).length > 0,
            nsHosts: o.nsHosts as string[],
            toNs: o.toNs as string[],
            domains: o.dnsDomain as string[],
            cache: o.dnsCache !== false,
            ...(o.dnsAllFamilies === true && { allFamilies: true }),
            ...(o.routeByName === true && { routeByName: true }),
            ...(o.routeGrace !== undefined && { routeGraceS: o.routeGrace as number }),
          },
          ...(o.autoNets === true && { autoNets: true }),
          socks: o.socks as string[],
          httpProxy: o.httpProxy as string[],
          proxyAuth: (o.proxyAuth as string | undefined) ?? secrets.SUBNET_TUNNEL_PROXY_AUTH,
          allow: o.allow as string[],
          localForwards: o.localForward as string[],
          remoteForwards: o.remoteForward as string[],
          background: o.background === true,
          auditLog: o.auditLog as string | undefined,
          auditDns: o.auditDns === true,
          gateway: o.gateway === true || (o.gatewayIf as string[]).length > 0,
          gatewayInterfaces: o.gatewayIf as string[],
          ownerOnly: o.ownerOnly === true,
          connections: o.connections as number,
          connectionsMax: Math.max(o.connectionsMax as number, o.connections as number),
          ...(o.netWatch === false && { netWatch: false }),
          ...(o.failClosed === true && { failClosed: true }),
          ...(o.only === true && { execOnly: true }),
          ...(o.forwardCheck === false && { noForwardCheck: true }),
          exec,
          verbose: o.verbose as number,
          quiet: o.quiet as number,
          ...(o.logFile !== undefined && { logFile: o.logFile as string }),
          force: o.force === true,
        },
      }
    })

  program
    .command('cleanup')
    .description('remove firewall rules and state left by subnet-tunnel instances that died')
    .option('-v, --verbose', 'more output', count, 0)
    .action((o: { verbose: number }) => {
      result.cmd = { kind: 'cleanup', verbose: o.verbose }
    })

  program
    .command('sudoers')
    .description('print a commented /etc/sudoers.d drop-in that lets a user start the helper without a password (refused on an unsafe install)')
    .option('--user <name>', 'the user the rule is for (default: you, or $SUDO_USER under sudo)')
    .action((o: { user?: string }) => {
      result.cmd = { kind: 'sudoers', ...(o.user !== undefined && { user: o.user }) }
    })

  program
    .command('status')
    .description('show every running subnet-tunnel instance of this user: remotes, subnets, forwards, connections')
    .option('--json', 'machine-readable output')
    .option('--all', 'also instances in other network namespaces (labelled)')
    .action((o: { json?: boolean; all?: boolean }) => {
      result.cmd = { kind: 'status', json: o.json === true, all: o.all === true }
    })

  program
    .command('stop')
    .description('stop a running instance (by id, profile or remote name; the only one when there is one) and wait for it to exit')
    .argument('[id|name]', 'instance id (or its first letters), profile name, or remote as given with -r')
    .option('--all', 'stop every instance of this user in this network namespace')
    .action((target: string | undefined, o: { all?: boolean }) => {
      if (target !== undefined && o.all === true) {
        throw new TunnelError('USAGE', 'stop: give an instance or --all, not both', { hint: 'subnet-tunnel stop --all' })
      }
      result.cmd = { kind: 'stop', ...(target !== undefined && { target }), all: o.all === true }
    })

  program
    .command('completion')
    .description('print a shell completion script: bash, zsh or fish')
    .argument('<shell>', 'bash, zsh or fish')
    .action((shell: string) => {
      result.cmd = { kind: 'completion', shell }
    })

  program
    .command('routes')
    .description('show what each running instance tunnels now and why: given, auto-net, learnt from a name (until when), excluded')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => {
      result.cmd = { kind: 'routes', json: o.json === true }
    })

  program
    .command('demo')
    .description('build a throwaway network with a real sshd (root), tunnel into it, show it working, tear it down')
    .option('--keep', 'leave the demo up until Enter or Ctrl-C')
    .option('--no-install', 'do not install missing Debian packages (sshd, iperf3, …): only say which')
    .action((o: { keep?: boolean; install?: boolean }) => {
      result.cmd = { kind: 'demo', keep: o.keep === true, install: o.install !== false }
    })

  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride()
    cmd.configureOutput({ writeOut: out.stdout, writeErr: out.stderr, outputError: () => {} })
    // Defaults are said once, in the descriptions' own words: commander would add "(default: [])"
    // to every repeatable option and a second "(default: 1)" where the text already says it.
    cmd.configureHelp({ optionDescription: (opt) => opt.description })
  }
  return program
}

/**
 * Parses argv (without node and script). Usage errors become TunnelError('USAGE') with
 * commander's message; --help and --version print and return { kind: 'exit' }.
 */
export interface ArgsOutput {
  stdout(s: string): void
  stderr(s: string): void
}

/**
 * Commander quotes a mistyped option whole: `--proxyauth=alice:s3cret` would put the password
 * in the error message (and in whatever log captures stderr). Keep the option name, drop the
 * value: '--name=…'.
 */
export function redactOptionValues(msg: string): string {
  return msg.replace(/'(--?[^'=\s]+)=[^']*'/g, "'$1=…'")
}

/**
 * `secrets`: what takeSecretEnv() took from the environment at start-up
 * ($SUBNET_TUNNEL_PROXY_AUTH); parseArgs never reads secrets from process.env itself.
 */
export function parseArgs(
  argv: readonly string[],
  version: string,
  out: ArgsOutput = { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) },
  secrets: SecretEnv = {},
  configFile: string = configPath(),
): ParsedCommand {
  const result: { cmd?: ParsedCommand } = {}
  const program = buildProgram(version, out, result, secrets)
  if (argv.length === 0) {
    out.stderr(SHORT_USAGE)
    return { kind: 'exit', code: 2 }
  }
  const expanded = expandProfile(argv, program, configFile)
  checkArgv(expanded.argv, optionShapes(program), commandNames(program))
  try {
    program.parse(expanded.argv, { from: 'user' })
  } catch (e) {
    if (e instanceof TunnelError) throw e
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        return { kind: 'exit', code: 0 }
      }
      // Commander puts its suggestion on a second line: "(Did you mean --method?)". Keep it, as the hint.
      const [first, ...more] = redactOptionValues(e.message.replace(/^error:\s*/, '')).split('\n')
      const meant = more.join(' ').match(/\(Did you mean (.+?)\?\)/)?.[1]
      throw new TunnelError('USAGE', first!, { hint: meant ? `did you mean ${meant}? (see subnet-tunnel --help)` : 'see subnet-tunnel --help' })
    }
    throw e
  }
  if (!result.cmd) throw new TunnelError('USAGE', 'nothing to do', { hint: 'see subnet-tunnel --help' })
  if (result.cmd.kind === 'tunnel' && expanded.profile !== undefined) return { kind: 'tunnel', args: { ...result.cmd.args, profile: expanded.profile } }
  return result.cmd
}

/**
 * The parser itself, for what is generated from its option table: shell completion and the man
 * page say exactly what --help says.
 */
export function programForDocs(version: string): Command {
  return buildProgram(version, { stdout: () => {}, stderr: () => {} }, {}, {})
}

/** What a bare `subnet-tunnel` prints (stderr, exit 2): the forms, and where to go next. */
export const SHORT_USAGE = `Usage: subnet-tunnel [options] -r [user@]host[:port] <subnet>... [exec -- CMD ARGS...]
       subnet-tunnel up PROFILE [options]
       subnet-tunnel status | stop [ID|NAME|--all] | cleanup | sudoers | demo | completion SHELL

  subnet-tunnel -r user@bastion 10.0.0.0/16     tunnel a private network
  sudo subnet-tunnel demo                      see it work, no bastion needed
  subnet-tunnel --help                         every option
`

/** Every option of the program as checkArgv needs it. */
function optionShapes(program: Command): OptionShape[] {
  return program.options.map((o) => ({
    ...(o.short && { short: o.short }),
    ...(o.long && { long: o.long }),
    takesValue: o.required || o.optional,
  }))
}

/** Subcommand names (and `up`, which names a profile), for typo suggestions. */
function commandNames(program: Command): string[] {
  return [...program.commands.map((c) => c.name()), 'help', 'up']
}
