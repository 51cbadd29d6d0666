/**
 * Who the kernel capture serves, decided offline: the gateway's interfaces and source networks
 * (--gateway-if, --allow) and the owner (--owner-only). The kernel matches themselves are built
 * in platform/firewall/nat.ts, nft.ts and tun.ts.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { formatCidr, parseCidr, uniqueCidrs, type Cidr } from '../config/cidr'
import { TunnelError } from '../errors'
import { isInterfaceName, MAX_GATEWAY_INTERFACES, MAX_GATEWAY_SOURCES } from '../platform/firewall/capture-scope'

/** What a gateway serves; an absent list means "every". */
export interface GatewayScope {
  readonly interfaces?: string[]
  readonly sources?: Cidr[]
}

/**
 * Names of the interfaces that could receive traffic to capture: those with a non-loopback
 * address (REDIRECT in PREROUTING sends to an address of the incoming interface: one without
 * any cannot be served anyway), except bridge ports — their traffic reaches IP through the
 * bridge, whose name is what the kernel matches (a container's veth has an IPv6 link-local
 * address, yet naming it would serve nothing).
 */
export function externalInterfaces(
  ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
  isBridgePort: (name: string) => boolean = (name) => isInterfaceName(name) && fs.existsSync(`/sys/class/net/${name}/brport`),
): string[] {
  return Object.entries(ifaces)
    .filter(([name, addrs]) => (addrs ?? []).some((a) => !a.internal) && !isBridgePort(name))
    .map(([name]) => name)
    .sort()
}

/**
 * --gateway's scope: the interfaces named with --gateway-if (each must exist here with an
 * address) and the source networks of --allow. Serving every interface is refused when there is
 * more than one: a gateway meant for a container bridge would otherwise also serve the LAN — every
 * neighbour reaching the private networks with the owner's SSH identity, whatever ip_forward says.
 */
export function planGatewayScope(
  a: { readonly gateway: boolean; readonly gatewayInterfaces: readonly string[]; readonly allow: readonly string[] },
  present: readonly string[] = externalInterfaces(),
): GatewayScope | undefined {
  if (!a.gateway) return undefined
  const have = present.length > 0 ? present.join(', ') : 'none'
  const interfaces = [...new Set(a.gatewayInterfaces)]
  for (const name of interfaces) {
    if (!isInterfaceName(name)) {
      throw new TunnelError('USAGE', `--gateway-if: "${name}" is not an interface name`, { hint: `interfaces here: ${have}` })
    }
    if (!present.includes(name)) {
      throw new TunnelError('USAGE', `--gateway-if: no interface "${name}" with an address here`, {
        hint: `interfaces here: ${have} (traffic is redirected to an address of the interface it arrives on; a bridge's ports are served through the bridge)`,
      })
    }
  }
  if (interfaces.length > MAX_GATEWAY_INTERFACES) {
    throw new TunnelError('USAGE', `--gateway-if: at most ${MAX_GATEWAY_INTERFACES} interfaces`, { hint: 'name the interfaces clients arrive on' })
  }
  const sources = uniqueCidrs(a.allow.map(parseCidr))
  if (sources.length > MAX_GATEWAY_SOURCES) {
    throw new TunnelError('USAGE', `--allow with --gateway: at most ${MAX_GATEWAY_SOURCES} networks`, { hint: 'use wider networks' })
  }
  if (interfaces.length === 0 && sources.length === 0 && present.length > 1) {
    throw new TunnelError('USAGE', `--gateway: this host has ${present.length} network interfaces (${have}); say which to serve`, {
      hint: `name them with --gateway-if IFACE[,IFACE] (e.g. --gateway-if ${present[0]}), or the clients with --allow CIDR`,
    })
  }
  return {
    ...(interfaces.length > 0 && { interfaces }),
    ...(sources.length > 0 && { sources }),
  }
}

/** "br0, docker0 from 172.17.0.0/16" / "every interface": for the up line and status. */
export function describeGatewayScope(s: GatewayScope): string {
  const on = s.interfaces ? s.interfaces.join(', ') : 'every interface'
  return s.sources ? `${on} from ${s.sources.map(formatCidr).join(', ')}` : on
}

/**
 * The invoking user's uid for --owner-only: our own, or under sudo (root with SUDO_UID set by
 * sudo) the caller's — whose programs are the ones to capture, not root's.
 */
export function invokingUid(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? 0): number {
  const sudo = env.SUDO_UID
  return uid === 0 && sudo !== undefined && /^\d{1,10}$/.test(sudo) && Number(sudo) <= 2 ** 32 - 2 ? Number(sudo) : uid
}
