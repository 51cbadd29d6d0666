/**
 * `--auto-nets` at run time: once the SSH connection to the default bastion is up, run the one
 * route command on it (an exec channel, bounded output), parse what it printed and choose the
 * networks to tunnel (config/remote-routes.ts, config/auto-nets.ts: pure, fuzzed). This file
 * only does the I/O around them and says what was chosen, and at -v why each route was not.
 *
 * An account that cannot run commands (ForceCommand, `restrict`, `command=` in
 * authorized_keys: forwarding-only) gets REMOTE_EXEC with the alternative: give the subnets.
 */
import os from 'node:os'
import { type Cidr, formatCidr, tryParseCidr, uniqueCidrs } from '../config/cidr'
import { type AutoNetsChoice, chooseAutoNets, describeRoute } from '../config/auto-nets'
import { BASTION_ROUTES_COMMAND, MAX_ROUTES_OUTPUT, parseBastionRoutes } from '../config/remote-routes'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { SshConnection } from '../ssh/engine'

/** How long the route command may take (a slow login shell, a busy bastion). */
export const AUTO_NETS_TIMEOUT_MS = 15_000

const HINT =
  'this account may not run commands on the bastion (ForceCommand, restrict, command= in authorized_keys): leave out --auto-nets and name the subnets instead, e.g. subnet-tunnel -r bastion 10.0.0.0/16'

export interface AutoNetsInputs {
  /** The bastion's addresses as this machine dials them; [] through a jump host or ProxyCommand. */
  readonly bastionAddresses: readonly string[]
  /** This machine's networks (interface address + prefix). */
  readonly localNetworks: readonly Cidr[]
  readonly log: Logger
}

/** What --auto-nets adds: networks to tunnel, and parts of them that must stay direct. */
export interface AutoNetsResult {
  readonly include: readonly { readonly cidr: Cidr; readonly why: string }[]
  readonly exclude: readonly { readonly cidr: Cidr; readonly why: string }[]
  readonly choice: AutoNetsChoice
}

/** Runs the route command on the bastion and chooses; throws REMOTE_EXEC when it cannot. */
export async function discoverAutoNets(session: Pick<SshConnection, 'exec'>, inputs: AutoNetsInputs): Promise<AutoNetsResult> {
  const { log } = inputs
  let output: string
  try {
    const r = await session.exec(BASTION_ROUTES_COMMAND, { timeoutMs: AUTO_NETS_TIMEOUT_MS, maxBytes: MAX_ROUTES_OUTPUT })
    output = r.stdout
    if (r.stderr.trim() !== '') log.debug('route', `auto-nets: the bastion's route command wrote to stderr: ${oneLine(r.stderr)}`)
  } catch (e) {
    // The engines quote the command in their message: ours is long and says nothing to the user.
    const why = errorMessage(e).split(BASTION_ROUTES_COMMAND).join('the route command')
    throw new TunnelError('REMOTE_EXEC', `--auto-nets: the bastion did not run the route command: ${why}`, { hint: HINT, cause: e })
  }
  let routes
  try {
    routes = parseBastionRoutes(output)
  } catch (e) {
    const said = oneLine(output)
    throw new TunnelError('REMOTE_EXEC', `--auto-nets: ${errorMessage(e)}${said ? ` (it said: "${said}")` : ''}`, { hint: HINT, cause: e })
  }
  if (routes.truncated) log.warn('route', `auto-nets: the bastion's routing table is longer than ${MAX_ROUTES_OUTPUT} bytes; the rest was not read`)
  const choice = chooseAutoNets({ routes, bastionAddresses: inputs.bastionAddresses, localNetworks: inputs.localNetworks })
  log.verbose('route', `auto-nets: routes from ${[routes.sources[4], routes.sources[6]].filter(Boolean).join(' and ')}; the bastion is reached at ${choice.linkAddresses.join(', ') || '(unknown)'}`)
  for (const d of choice.dropped) log.verbose('route', `auto-nets: not ${describeRoute(d.route)}: ${d.detail}`)
  for (const x of choice.excludes) log.verbose('route', `auto-nets: excluding ${formatCidr(x.net)}: ${x.detail}`)
  if (choice.chosen.length === 0) {
    throw new TunnelError('NO_SUBNETS', "--auto-nets: the bastion routes no network we could tunnel (only its link to us, this machine's own networks or the default route)", {
      hint: 'run with -v to see each route and why it was left out; name the subnets instead',
    })
  }
  log.info('route', `auto-nets: tunnelling ${choice.chosen.map((c) => formatCidr(c.net)).join(', ')}`)
  return {
    include: choice.chosen.map((c) => ({ cidr: c.net, why: describeRoute(c.route) })),
    exclude: choice.excludes.map((x) => ({ cidr: x.net, why: x.detail })),
    choice,
  }
}

/** This machine's networks (each interface address with its prefix), loopback left out. */
export function localInterfaceNetworks(ifaces = os.networkInterfaces()): Cidr[] {
  const out: Cidr[] = []
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue
      const c = a.cidr ? tryParseCidr(a.cidr.replace(/%[^/]*/, '')) : undefined
      if (c) out.push(c)
    }
  }
  return uniqueCidrs(out)
}

/** The first line of untrusted text, printable ASCII only and bounded, for one log line. */
function oneLine(s: string): string {
  const first = s.trim().split('\n')[0] ?? ''
  return first.replace(/[^\x20-\x7e]/g, '?').slice(0, 120)
}
