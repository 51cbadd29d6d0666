import { minAnswerTtl, negativeTtl, rewriteTtls } from './ttl'
import { HEADER_SIZE, Rcode, TYPE_SOA, readHeader, setId, type QueryInfo } from './wire'

export interface DnsCacheOptions {
  /** Most entries kept; the least recently used goes first (default 10,000). */
  readonly maxEntries?: number
  /** Longest time an answer is kept, in seconds, whatever its TTL (default 86,400: one day). */
  readonly maxTtl?: number
  /** Clock in milliseconds (default Date.now); injectable for tests. */
  readonly now?: () => number
}

interface Entry {
  /** The answer as received, TTLs already capped at maxTtl. */
  readonly answer: Buffer
  readonly storedAt: number
  readonly expiresAt: number
}

export interface CacheStats {
  readonly entries: number
  readonly hits: number
  readonly misses: number
  readonly stored: number
  readonly evicted: number
}

/**
 * Answer cache keyed by (lower-cased name, type, class, DO, CD) — see QueryInfo.key.
 *
 * What is cached, and for how long:
 * - NOERROR with answers: the smallest answer TTL.
 * - NXDOMAIN, and NOERROR without answers (NODATA): the RFC 2308 negative TTL, min(SOA TTL,
 *   SOA MINIMUM) of the SOA in the authority section. Without an SOA it is not cached
 *   (RFC 2308 5: such answers SHOULD NOT be cached).
 * - SERVFAIL, REFUSED, truncated and malformed answers are never cached: through a tunnel
 *   they mostly mean a transient failure, and the next query should try again.
 * TTL 0 means "do not cache". Entries expire lazily on lookup (no timer per entry) and the
 * Map's insertion order doubles as the LRU list.
 */
export class DnsCache {
  private readonly entries = new Map<string, Entry>()
  private readonly maxEntries: number
  private readonly maxTtl: number
  private readonly now: () => number
  private hits = 0
  private misses = 0
  private stored = 0
  private evicted = 0

  constructor(opts: DnsCacheOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 10_000)
    this.maxTtl = opts.maxTtl ?? 86_400
    this.now = opts.now ?? Date.now
  }

  get size(): number {
    return this.entries.size
  }

  /**
   * The cached answer for a query: a fresh copy carrying the query's id and question bytes
   * (clients that randomise the name's case, "0x20", see their own spelling), with every TTL
   * lowered by the whole seconds spent in the cache. Undefined on a miss.
   */
  get(q: QueryInfo, query: Buffer): Buffer | undefined {
    const e = this.entries.get(q.key)
    const now = this.now()
    if (!e || now >= e.expiresAt) {
      if (e) this.entries.delete(q.key)
      this.misses++
      return undefined
    }
    // Move to the back of the LRU order.
    this.entries.delete(q.key)
    this.entries.set(q.key, e)
    const elapsed = Math.floor((now - e.storedAt) / 1000)
    const out = elapsed > 0 ? rewriteTtls(e.answer, (t) => t - elapsed) : Buffer.from(e.answer)
    if (!out) return undefined
    setId(out, q.id)
    // Same key means same name modulo case, so the question has the same length in both.
    if (q.questionEnd <= out.length && q.questionEnd <= query.length) query.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd)
    this.hits++
    return out
  }

  /** Stores an answer to the query when it is cacheable; returns the TTL used (0: not stored). */
  put(q: QueryInfo, answer: Buffer): number {
    const ttl = cacheTtl(answer)
    if (ttl === undefined || ttl <= 0) return 0
    const kept = Math.min(ttl, this.maxTtl)
    // Cap the TTLs in the stored bytes too, so a client never sees one longer than our entry
    // lives; in negative answers the SOA carries the negative TTL (RFC 2308 5).
    const negative = !(answer.readUInt16BE(6) > 0 && (answer[3] & 0xf) === Rcode.NOERROR)
    const stored = rewriteTtls(answer, (t, rr) =>
      negative && rr.type === TYPE_SOA && rr.section === 1 ? kept : Math.min(t, this.maxTtl),
    )
    if (!stored) return 0
    const now = this.now()
    this.entries.delete(q.key)
    this.entries.set(q.key, { answer: stored, storedAt: now, expiresAt: now + kept * 1000 })
    this.stored++
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
      this.evicted++
    }
    return kept
  }

  clear(): void {
    this.entries.clear()
  }

  stats(): CacheStats {
    return { entries: this.entries.size, hits: this.hits, misses: this.misses, stored: this.stored, evicted: this.evicted }
  }
}

/**
 * How long an answer may be cached, in seconds, per the rules on DnsCache; undefined when it
 * must not be cached.
 */
export function cacheTtl(answer: Buffer): number | undefined {
  const h = readHeader(answer)
  if (!h || !h.qr || h.tc || h.opcode !== 0 || h.qdcount !== 1) return undefined
  if (h.rcode === Rcode.NOERROR && h.ancount > 0) return minAnswerTtl(answer)
  if (h.rcode === Rcode.NXDOMAIN || h.rcode === Rcode.NOERROR) return negativeTtl(answer)
  return undefined
}
