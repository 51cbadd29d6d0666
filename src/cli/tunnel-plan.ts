import { type BindAddress, parseBindAddress, parseProxyAuth } from '../config/bind-address'
import type { Cidr } from '../config/cidr'
import { type ListenAddress, parseListen } from '../config/listen'
import { checkSshRequest, resolveSshConfig } from '../config/ssh-config'
import type { RemotePlan } from '../config/ssh-config-types'
import { resolveNetworks } from '../config/subnets'
import { TunnelError } from '../errors'
import { AccessPolicy } from '../router/access'
import type { TunnelArgs } from './args'
import { type GatewayScope, invokingUid, planGatewayScope } from './capture-scope'
import { type DnsPlan, planDns } from './dns-setup'
import { type EngineProgram, findEngine } from '../tun/external-engine'
import { firewallFor } from '../platform/firewall/choose-method'

export interface IncludePlan {
  readonly cidr: Cidr
  /** Remote name; undefined = the default remote. */
  readonly via?: string
}

/** Everything decided before touching the network or the kernel. */
export interface TunnelPlan {
  readonly remotes: RemotePlan[]
  readonly defaultRemote: string
  readonly includes: IncludePlan[]
  readonly userExcludes: Cidr[]
  readonly dns?: DnsPlan
  /** Kernel capture (and so the privileged helper) is needed. */
  readonly capture: boolean
  readonly listen: ListenAddress
  readonly socks: BindAddress[]
  readonly http: BindAddress[]
  readonly proxyAuth?: { username: string; password: string }
  readonly access: AccessPolicy
  readonly method: 'auto' | 'nat' | 'nft' | 'pf' | 'tun'
  /** The packet engine of --method tun: the built-in stack, or an external program found now. */
  readonly tunEngine?: 'builtin' | EngineProgram
  readonly connections: number
  readonly connectionsMax: number
  /** Also capture traffic routed through this host (containers, VMs). */
  readonly gateway: boolean
  /** gateway: the interfaces and source networks served (absent lists: every). */
  readonly gatewayScope?: GatewayScope
  /** --owner-only: the uid whose local connections alone are captured. */
  readonly ownerUid?: number
  /** Raw -L / -R specs; parsed by the forward modules. */
  readonly localForwards: string[]
  readonly remoteForwards: string[]
}

/**
 * Validates the whole command line offline: networks (CIDR=REMOTE syntax for several bastions),
 * listen and proxy addresses, DNS options, and each remote's ssh configuration (`ssh -G`).
 * Any error here leaves nothing behind because nothing has been started.
 */
export async function planTunnel(args: TunnelArgs): Promise<TunnelPlan> {
  const split = args.subnets.map(splitRemote)
  const defaultRemote = args.remote || split.find((s) => s.via)?.via || ''
  if (!defaultRemote) {
    throw new TunnelError('NO_REMOTE', 'no SSH destination given', {
      hint: 'use -r [user@]host[:port] or set SUBNET_TUNNEL_REMOTE',
    })
  }
  const hasFrontEnd =
    args.socks.length + args.httpProxy.length + args.localForwards.length + args.remoteForwards.length > 0
  if (split.length === 0 && !hasFrontEnd && !args.dns.enabled) {
    throw new TunnelError('NO_SUBNETS', 'nothing to do: no subnets, proxies or forwards', {
      hint: 'name subnets (subnet-tunnel -r bastion 10.0.0.0/16), or use -D PORT, --http-proxy PORT, -L or -R',
    })
  }
  const includes: IncludePlan[] = []
  for (const s of split) {
    for (const cidr of await resolveNetworks([s.network])) includes.push({ cidr, via: s.via })
  }
  const userExcludes = await resolveNetworks(args.exclude)
  const dns = args.dns.enabled ? await planDns(args.dns) : undefined
  if (dns && includes.length === 0) {
    throw new TunnelError('NO_SUBNETS', '--dns needs at least one subnet to tunnel', {
      hint: 'the names resolve to private addresses that must be tunnelled too, e.g. 10.0.0.0/16',
    })
  }
  const listen = parseListen(args.listen)
  const socks = args.socks.map((s) => parseBindAddress(s, '-D'))
  const http = args.httpProxy.map((s) => parseBindAddress(s, '--http-proxy'))
  const proxyAuth = args.proxyAuth !== undefined ? parseProxyAuth(args.proxyAuth) : undefined
  const access = new AccessPolicy(args.allow)
  if (args.gateway && includes.length === 0) {
    throw new TunnelError('USAGE', '--gateway needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion --gateway-if br0 10.0.0.0/16' })
  }
  if (args.ownerOnly && includes.length === 0) {
    throw new TunnelError('USAGE', '--owner-only needs subnets to capture', { hint: 'e.g. subnet-tunnel -r bastion --owner-only 10.0.0.0/16' })
  }
  if (args.ownerOnly && process.platform === 'darwin') {
    throw new TunnelError('USAGE', '--owner-only is not available on macOS', { hint: 'leave out --owner-only' })
  }

  const tunEngine = planTunEngine(args, dns)
  // After the tun check: --gateway is refused there whatever its scope.
  const gatewayScope = planGatewayScope(args)

  const names = [...new Set([defaultRemote, ...split.map((s) => s.via).filter((v): v is string => v !== undefined)])]
  const request = (name: string) => ({
    destination: name,
    configFile: args.sshConfig,
    port: args.port,
    identities: args.identity,
    jump: args.jump,
    options: args.sshOption,
  })
  // Every name is checked before the first `ssh -G` runs: that one could already run a Match exec.
  for (const name of names) checkSshRequest(request(name))
  const remotes = await Promise.all(
    names.map(async (name): Promise<RemotePlan> => {
      const target = await resolveSshConfig(request(name))
      const hops = await Promise.all(
        target.proxyJump.map((h) => resolveSshConfig({ destination: h, configFile: args.sshConfig, identities: [], options: [] })),
      )
      return { name, target, hops }
    }),
  )
  return {
    remotes,
    defaultRemote,
    includes,
    userExcludes,
    dns,
    capture: includes.length > 0,
    method: args.method,
    ...(tunEngine && { tunEngine }),
    gateway: args.gateway,
    ...(gatewayScope && { gatewayScope }),
    ...(args.ownerOnly && { ownerUid: invokingUid() }),
    connections: args.connections,
    connectionsMax: args.connectionsMax,
    listen,
    socks,
    http,
    proxyAuth,
    access,
    localForwards: args.localForwards,
    remoteForwards: args.remoteForwards,
  }
}

/**
 * --method tun / --tun-engine, checked offline: the engine program must exist now, and the
 * combinations that cannot work are refused here rather than half-way through start-up.
 */
export function planTunEngine(args: TunnelArgs, dns: DnsPlan | undefined): TunnelPlan['tunEngine'] {
  if (args.method === 'auto' || firewallFor(args.method).capture !== 'device') {
    if (args.tunEngine !== undefined) throw new TunnelError('USAGE', '--tun-engine needs --method tun', { hint: 'e.g. --method tun --tun-engine tun2socks' })
    return undefined
  }
  if (args.gateway) {
    throw new TunnelError('USAGE', '--gateway is not needed with --method tun', {
      hint: 'traffic routed through this host follows the same routes into the TUN device (with IP forwarding on)',
    })
  }
  const spec = args.tunEngine ?? 'builtin'
  if (spec === 'builtin') return 'builtin'
  const program = findEngine(spec)
  if (dns) {
    throw new TunnelError('USAGE', `--dns with --tun-engine ${spec}: DNS over the TUN device needs the built-in engine`, {
      hint: 'external engines send UDP through SOCKS5 UDP ASSOCIATE, which the tunnel does not carry; use --tun-engine builtin, or another --method',
    })
  }
  return program
}

/** "10.0.0.0/16=bastion-b" → network and remote; '=' never occurs in a CIDR or host name. */
function splitRemote(s: string): { network: string; via?: string } {
  const i = s.indexOf('=')
  if (i < 0) return { network: s }
  const network = s.slice(0, i)
  const via = s.slice(i + 1)
  if (!network || !via) {
    throw new TunnelError('USAGE', `"${s}": expected SUBNET=REMOTE`, { hint: 'e.g. 10.1.0.0/16=bastion-b' })
  }
  return { network, via }
}
