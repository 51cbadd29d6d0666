import { TunnelError } from '../../errors'
import { natFirewall } from './nat'
import { nftFirewall } from './nft'
import { pfFirewall } from './pf'
import { tunFirewall } from './tun'
import type { Firewall, MethodName, ProbeResult } from './types'

/** What the user asked for with --method. */
export type RequestedMethod = 'auto' | MethodName

/** The chosen backend and a one-line reason to show the user. */
export interface MethodChoice {
  readonly method: MethodName
  readonly why: string
}

const BACKENDS: Readonly<Record<MethodName, Firewall>> = { nat: natFirewall, nft: nftFirewall, pf: pfFirewall, tun: tunFirewall }

/** The backend object of a method name. */
export function firewallFor(method: MethodName): Firewall {
  return BACKENDS[method]
}

/** The backends that can exist on a platform (the leftover scan asks each of them). */
export function backendsOn(platform: NodeJS.Platform = process.platform): Firewall[] {
  return platform === 'darwin' ? [pfFirewall] : [natFirewall, nftFirewall, tunFirewall]
}

/** Hint for an explicitly requested method whose probe gave none. */
const FALLBACK_HINT: Record<MethodName, string> = {
  nft: 'install nftables, or use --method nat',
  nat: 'install iptables, or use --method nft',
  pf: 'pf is the macOS backend',
  tun: 'load the tun module (modprobe tun), or use --method nft',
}

function notUsable(method: MethodName, p: ProbeResult | undefined): string {
  if (!p) return `${method} not probed`
  return p.ok ? '' : p.why
}

/**
 * Pure choice from probe results. auto: pf when it was probed (macOS), else nft when usable,
 * else nat; never tun (a device and policy routes are a different way of working, which the
 * user asks for with --method tun). An explicit method must be usable. Throws FW_UNSUPPORTED (with the probe's own
 * hint when there is one) otherwise.
 */
export function chooseMethod(
  requested: RequestedMethod,
  probes: Partial<Record<MethodName, ProbeResult>>,
): MethodChoice {
  const nft = probes.nft
  const nat = probes.nat
  if (requested !== 'auto') {
    const p = probes[requested]
    if (p?.ok) return { method: requested, why: `${requested}: requested with --method` }
    throw new TunnelError('FW_UNSUPPORTED', `--method ${requested}: ${notUsable(requested, p)}`, {
      hint: (p && !p.ok && p.hint) || FALLBACK_HINT[requested],
    })
  }
  // auto on macOS: pf was the only candidate probed (selectMethod), so it decides alone.
  const pf = probes.pf
  if (pf?.ok) return { method: 'pf', why: 'pf: macOS' }
  if (pf) {
    throw new TunnelError('FW_UNSUPPORTED', `pf unusable: ${pf.ok ? '' : pf.why}`, {
      hint: (!pf.ok && pf.hint) || 'check /etc/pf.conf and run as root',
    })
  }
  if (nft?.ok) return { method: 'nft', why: 'nft: nftables usable' }
  if (nat?.ok) return { method: 'nat', why: `nat: ${notUsable('nft', nft)}` }
  throw new TunnelError(
    'FW_UNSUPPORTED',
    `no redirection backend usable (nft: ${notUsable('nft', nft)}; nat: ${notUsable('nat', nat)})`,
    { hint: 'install nftables or iptables (apt-get install nftables iptables) and run as root' },
  )
}

/**
 * Probes what `requested` needs (auto: pf on macOS; elsewhere nft first, nat only when nft is
 * unusable) and chooses. `probe` is usually `(m) => helper.probe(m, { ipv6 })`; `opts.platform`
 * (default process.platform) is injectable for tests.
 */
export async function selectMethod(
  requested: RequestedMethod,
  probe: (method: MethodName) => Promise<ProbeResult>,
  opts: { platform?: NodeJS.Platform } = {},
): Promise<MethodChoice> {
  const probes: Partial<Record<MethodName, ProbeResult>> = {}
  if (requested !== 'auto') {
    probes[requested] = await probe(requested)
  } else if ((opts.platform ?? process.platform) === 'darwin') {
    probes.pf = await probe('pf')
  } else {
    probes.nft = await probe('nft')
    if (!probes.nft.ok) probes.nat = await probe('nat')
  }
  return chooseMethod(requested, probes)
}
