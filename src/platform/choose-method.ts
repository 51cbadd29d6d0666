import { TunnelError } from '../errors'
import type { RevertScope } from './capture-scope'
import { natFirewall, natRevert } from './nat'
import { nftFirewall, nftRevert } from './nft'
import { pfFirewall, pfRevert } from './pf'
import { tunFirewall, tunRevert } from './tun'
import type { Firewall, MethodName, ProbeResult } from './types'

/** What the user asked for with --method. */
export type RequestedMethod = 'auto' | MethodName

/** The chosen backend and a one-line reason to show the user. */
export interface MethodChoice {
  readonly method: MethodName
  readonly why: string
}

/** The backend object of a method name. */
export function firewallFor(method: MethodName): Firewall {
  if (method === 'pf') return pfFirewall
  if (method === 'tun') return tunFirewall
  return method === 'nft' ? nftFirewall : natFirewall
}

/**
 * Revert argv of an instance from (method, id, families, scope) alone — never from stored argv.
 * The scope matters for nat only (its jumps carry the gateway and owner matches, and the DNS
 * guard lives in the filter table); nft's `delete table` covers every chain, tun's rule
 * deletion matches any uid range.
 */
export function revertFor(
  method: MethodName,
  instanceId: string,
  families: ReadonlyArray<4 | 6>,
  scope: RevertScope = {},
  /** pf: the enable-reference token recorded in the journal (released with `pfctl -X`). */
  pfToken?: string,
): string[][] {
  if (method === 'pf') return pfRevert(instanceId, pfToken)
  if (method === 'tun') return tunRevert(instanceId, families)
  return method === 'nft' ? nftRevert(instanceId) : natRevert(instanceId, families, scope)
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
