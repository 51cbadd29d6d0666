import { formatCidr } from '../config/cidr'
import { formatHostPort } from '../config/host-port'
import type { SshHostConfig } from '../config/ssh-config-types'
import type { MethodName } from '../platform/firewall/types'
import { describeGatewayScope } from './capture-scope'
import type { DnsRuntime } from './dns-setup'
import type { FrontEndHandle } from './front-ends'
import type { TunnelPlan } from './plan'
import type { TunHandle } from './tun-setup'

/** What the up line shows of a running tunnel (TunnelRuntime). */
export interface UpLineState {
  readonly plan: TunnelPlan
  readonly method?: { readonly method: MethodName }
  readonly listener?: { readonly port: number }
  readonly tun?: TunHandle
  readonly frontEnds: readonly FrontEndHandle[]
  readonly dns?: DnsRuntime
  /** The first SSH connection of each bastion (for the engine and, on openssh, the master). */
  readonly sessions?: ReadonlyMap<string, { describe(): { engine: string; detail?: string } }>
}

/** "openssh, master pid 123" / "builtin". */
export function describeEngine(d: { engine: string; detail?: string } | undefined): string | undefined {
  return d ? (d.detail ? `${d.engine}, ${d.detail}` : d.engine) : undefined
}

/** The one line printed once everything is up. */
export function upLine(rt: UpLineState): string {
  const { plan } = rt
  const parts: string[] = []
  const remotes = plan.remotes.map((r) => {
    const via = r.hops.length ? ` via ${r.hops.map(hostPort).join(',')}` : ''
    const nets = plan.includes.filter((i) => (i.via ?? plan.defaultRemote) === r.name).map((i) => formatCidr(i.cidr))
    const engine = describeEngine(rt.sessions?.get(r.name)?.describe())
    return `${r.target.user}@${hostPort(r.target)}${via}${engine ? ` (${engine})` : ''}${plan.remotes.length > 1 && nets.length ? ` for ${nets.join(', ')}` : ''}`
  })
  parts.push(`remote ${remotes.join('; ')}`)
  if (plan.includes.length || plan.routeByName) {
    const inc = plan.includes.map((i) => formatCidr(i.cidr)).join(', ')
    const exc = plan.userExcludes.length ? ` (excluding ${plan.userExcludes.map(formatCidr).join(', ')})` : ''
    if (plan.includes.length) parts.push(`subnets ${inc}${exc}`)
    else parts.push('subnets: none given, learnt from DNS answers')
    if (rt.method) {
      const gw = plan.gatewayScope ? ` (gateway: ${describeGatewayScope(plan.gatewayScope)})` : ''
      const owner = plan.ownerUid !== undefined ? ` (owner uid ${plan.ownerUid} only)` : ''
      parts.push(`method ${rt.method.method}${gw}${owner}`)
    }
    if (rt.listener) parts.push(`listener ${formatHostPort(plan.gateway ? '0.0.0.0' : plan.listen.host, rt.listener.port)}`)
    if (rt.tun) parts.push(`device ${rt.tun.device} (engine ${rt.tun.engine}${rt.tun.engineVersion ? ` ${rt.tun.engineVersion}` : ''})`)
  }
  for (const f of rt.frontEnds) parts.push(f.describe())
  if (rt.dns) {
    const domains = rt.dns.domains ?? plan.dns?.domains ?? []
    const doms = domains.length ? ` for ${domains.join(', ')}${plan.routeByName ? ' (routing their addresses)' : ''}` : ''
    // Whose resolver it is: 127.0.0.53 alone reads like this machine's own stub.
    const servers = rt.dns.remote.map((d) => (d.port === 53 ? d.host : formatHostPort(d.host, d.port))).join(', ')
    const given = (plan.dns?.toNs.length ?? 0) > 0
    parts.push(given ? `DNS → ${servers} through ${plan.defaultRemote}${doms}` : `DNS → ${plan.defaultRemote}'s resolver ${servers}${doms}`)
  }
  return `subnet-tunnel up: ${parts.join(', ')}`
}

function hostPort(c: SshHostConfig): string {
  return formatHostPort(c.hostName, c.port)
}
