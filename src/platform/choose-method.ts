import { TunnelError } from '../errors'
import { natFirewall, natRevert } from './nat'
import { nftFirewall, nftRevert } from './nft'
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
  return method === 'nft' ? nftFirewall : natFirewall
}

/**
 * Revert argv of an instance from (method, id, families, gateway) alone — never from stored argv.
 * `gateway` matters for nat only (the PREROUTING jump); nft's `delete table` covers both chains.
 */
export function revertFor(
  method: MethodName,
  instanceId: string,
  families: ReadonlyArray<4 | 6>,
  gateway = false,
): string[][] {
  return method === 'nft' ? nftRevert(instanceId) : natRevert(instanceId, families, gateway)
}

function notUsable(method: MethodName, p: ProbeResult | undefined): string {
  if (!p) return `${method} not probed`
  return p.ok ? '' : p.why
}

/**
 * Pure choice from probe results. auto: nft when usable, else nat. An explicit method must be
 * usable. Throws FW_UNSUPPORTED (with the probe's own hint when there is one) otherwise.
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
      hint: (p && !p.ok && p.hint) || (requested === 'nft' ? 'install nftables, or use --method nat' : 'install iptables, or use --method nft'),
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
 * Probes what `requested` needs (auto: nft first, nat only when nft is unusable) and chooses.
 * `probe` is usually `(m) => helper.probe(m, { ipv6 })`.
 */
export async function selectMethod(
  requested: RequestedMethod,
  probe: (method: MethodName) => Promise<ProbeResult>,
): Promise<MethodChoice> {
  const probes: Partial<Record<MethodName, ProbeResult>> = {}
  if (requested !== 'auto') {
    probes[requested] = await probe(requested)
  } else {
    probes.nft = await probe('nft')
    if (!probes.nft.ok) probes.nat = await probe('nat')
  }
  return chooseMethod(requested, probes)
}
