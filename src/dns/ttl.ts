/**
 * TTL arithmetic on raw messages (RFC 1035 3.2.1, RFC 2181 8, RFC 2308 5), for the cache:
 * no full decode, and undefined instead of an exception on malformed input.
 */
import { TYPE_OPT, TYPE_SOA, layout, skipName, type RrRef } from './wire'

/** RFC 2181 8: a TTL with the top bit set is treated as zero. */
function ttlAt(msg: Buffer, off: number): number {
  const t = msg.readUInt32BE(off)
  return t > 0x7fffffff ? 0 : t
}

/** Smallest TTL of the answer section; undefined when there are no answers or it is malformed. */
export function minAnswerTtl(msg: Buffer): number | undefined {
  const l = layout(msg)
  if (!l) return undefined
  let min: number | undefined
  for (const rr of l.records) if (rr.section === 0) min = Math.min(min ?? Infinity, ttlAt(msg, rr.ttlOffset))
  return min
}

/** Smallest TTL over all records except OPT (whose TTL field is not a TTL). */
export function minTtl(msg: Buffer): number | undefined {
  const l = layout(msg)
  if (!l) return undefined
  let min: number | undefined
  for (const rr of l.records) if (rr.type !== TYPE_OPT) min = Math.min(min ?? Infinity, ttlAt(msg, rr.ttlOffset))
  return min
}

/**
 * Negative-caching TTL (RFC 2308 5): min(SOA TTL, SOA MINIMUM) of the SOA in the authority
 * section. Undefined without an SOA (such answers must not be cached) or when malformed.
 */
export function negativeTtl(msg: Buffer): number | undefined {
  const l = layout(msg)
  if (!l) return undefined
  for (const rr of l.records) {
    if (rr.section !== 1 || rr.type !== TYPE_SOA) continue
    const end = rr.rdataOffset + rr.rdlength
    let off = skipName(msg, rr.rdataOffset) // MNAME
    if (off < 0 || off > end) return undefined
    off = skipName(msg, off) // RNAME
    if (off < 0 || off + 20 > end) return undefined
    const minimum = msg.readUInt32BE(off + 16)
    return Math.min(ttlAt(msg, rr.ttlOffset), minimum > 0x7fffffff ? 0 : minimum)
  }
  return undefined
}

/**
 * A copy of msg with every TTL (except OPT's) replaced by f(ttl, record). Undefined when
 * malformed. Used for cache ageing: the bytes are copied once and patched in place.
 */
export function rewriteTtls(msg: Buffer, f: (ttl: number, rr: RrRef) => number): Buffer | undefined {
  const l = layout(msg)
  if (!l) return undefined
  const out = Buffer.from(msg)
  for (const rr of l.records) {
    if (rr.type === TYPE_OPT) continue
    const t = Math.max(0, Math.min(0x7fffffff, Math.floor(f(ttlAt(msg, rr.ttlOffset), rr))))
    out.writeUInt32BE(t, rr.ttlOffset)
  }
  return out
}

/** A copy with all TTLs lowered by n seconds (never below 0), OPT untouched. */
export function decrementTtls(msg: Buffer, n: number): Buffer | undefined {
  return rewriteTtls(msg, (t) => t - n)
}
