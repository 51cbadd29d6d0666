/**
 * The addresses a DNS answer gives for its name (--route-by-name): every A and AAAA record in
 * the answer section, with its TTL. The answer came from the far side, an attacker in our
 * threat model: it is decoded defensively (dns-packet throws on oddities: then nothing is
 * learnt), records are bounded in number, and every address is re-parsed; what may be routed
 * is decided by the caller (router/learnt-routes.ts), not here.
 */
import * as dnsPacket from 'dns-packet'
import { isIpLiteral } from '../config/cidr'

/** Most addresses taken from one answer (a name with hundreds of A records is not a host). */
export const MAX_ADDRESSES_PER_ANSWER = 32

export interface AnswerAddress {
  readonly address: string
  /** Seconds, as the answer says (0 allowed: the caller applies its floor). */
  readonly ttl: number
}

/** A/AAAA of an answer's answer section; [] for anything else or what cannot be decoded. */
export function answerAddresses(answer: Buffer): AnswerAddress[] {
  let p: dnsPacket.Packet
  try {
    p = dnsPacket.decode(answer)
  } catch {
    return []
  }
  const rcode = (p as { rcode?: unknown }).rcode
  if (p.type !== 'response' || (rcode !== undefined && rcode !== 'NOERROR')) return []
  const out: AnswerAddress[] = []
  for (const a of p.answers ?? []) {
    if (out.length >= MAX_ADDRESSES_PER_ANSWER) break
    if (a.type !== 'A' && a.type !== 'AAAA') continue
    const data = (a as { data?: unknown }).data
    const ttl = (a as { ttl?: unknown }).ttl
    if (typeof data !== 'string' || !isIpLiteral(data)) continue
    out.push({ address: data, ttl: typeof ttl === 'number' && Number.isInteger(ttl) && ttl >= 0 ? ttl : 0 })
  }
  return out
}
