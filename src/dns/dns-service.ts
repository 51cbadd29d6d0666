import { performance } from 'node:perf_hooks'
import type { Logger } from '../observe/logger'
import { silentLogger } from '../observe/logger'
import type { DnsCache } from './cache'
import { summarizeAnswer } from './describe'
import { SplitDnsPolicy, type DnsRoute } from './policy'
import type { ClientAddress, ResolveResult, Resolver, Transport } from './types'
import { Rcode, errorReply, parseQuery, rcodeName, readHeader, truncateAnswer, typeName, type QueryInfo } from './wire'
import { formatHostPort } from '../config/host-port'

export interface DnsServiceOptions {
  /** Resolves through the tunnel (a TunnelResolver). */
  readonly tunnel: Resolver
  /** The machine's original resolvers (an UpstreamResolver), for names split DNS keeps local.
   * Without it such names are answered REFUSED. */
  readonly local?: Resolver
  /** Split DNS; default: everything through the tunnel. */
  readonly policy?: SplitDnsPolicy
  /** Answer cache; leave out for --no-dns-cache. */
  readonly cache?: DnsCache
  readonly log?: Logger
  /** Called once per answered query (for the audit log); must not throw. */
  readonly onAnswered?: (e: AnsweredQuery) => void
  /**
   * --fail-closed: while it returns true (the SSH connection is down), names that go through
   * the tunnel are answered REFUSED at once — never sent to the local resolver, never left
   * waiting for a reconnect.
   */
  readonly refuseTunnel?: () => boolean
  /**
   * Address families whose queries (A for 4, AAAA for 6) through the tunnel get an empty
   * NOERROR answer without asking: no tunnelled subnet is of that family (dns-setup.ts).
   */
  readonly emptyFamilies?: ReadonlyArray<4 | 6>
  /**
   * --route-by-name: called with every answer for a tunnelled name (fresh or cached) and awaited
   * BEFORE the answer goes to the client, so its addresses are routed by the time the client
   * connects. Must not throw.
   */
  readonly beforeAnswer?: (qname: string, answer: Buffer) => Promise<void>
}

const QTYPE_OF_FAMILY = { 4: 1, 6: 28 } as const

/** One answered query, as the audit log records it. */
export interface AnsweredQuery {
  readonly client: string
  readonly qname: string
  readonly qtype: string
  readonly route: 'cache' | DnsRoute
  readonly rcode: string
  readonly ms: number
}

export interface DnsServiceStats {
  readonly queries: number
  readonly udp: number
  readonly tcp: number
  /** Garbage dropped without an answer. */
  readonly dropped: number
  /** Malformed or unsupported queries answered FORMERR/NOTIMP. */
  readonly rejected: number
  readonly cacheHits: number
  readonly tunnel: number
  readonly local: number
  /** Queries we answered SERVFAIL because no resolver answered. */
  readonly failed: number
  /** UDP answers cut down to the client's limit (TC=1). */
  readonly truncated: number
}

/**
 * The DNS pipeline behind the interceptor: cheap parse → cache → split-DNS policy → tunnel or
 * local resolver → cache store → UDP truncation. Never throws and never rejects: garbage is
 * dropped (undefined) or answered FORMERR, failures become SERVFAIL.
 */
export class DnsService {
  private readonly policy: SplitDnsPolicy
  private readonly log: Logger
  private counters = { queries: 0, udp: 0, tcp: 0, dropped: 0, rejected: 0, cacheHits: 0, tunnel: 0, local: 0, failed: 0, truncated: 0 }

  constructor(private readonly opts: DnsServiceOptions) {
    this.policy = opts.policy ?? new SplitDnsPolicy([])
    this.log = opts.log ?? silentLogger
  }

  stats(): DnsServiceStats {
    return { ...this.counters }
  }

  /** The answer to send back to the client, or undefined to send nothing. */
  async handle(query: Buffer, via: Transport, client: ClientAddress): Promise<Buffer | undefined> {
    try {
      return await this.handleUnsafe(query, via, client)
    } catch (e) {
      // Defence in depth: a bug here must cost one query, not the process.
      this.log.debug('dns', `internal error on a query from ${formatHostPort(client.address, client.port)}: ${String(e)}`)
      this.counters.failed++
      return errorReply(query, Rcode.SERVFAIL)
    }
  }

  private async handleUnsafe(query: Buffer, via: Transport, client: ClientAddress): Promise<Buffer | undefined> {
    const start = performance.now()
    this.counters.queries++
    this.counters[via]++
    const q = parseQuery(query)
    if (!q) return this.reject(query, client)
    if (q.opcode !== 0) {
      this.counters.rejected++
      this.log.debug('dns', `opcode ${q.opcode} from ${formatHostPort(client.address, client.port)}: NOTIMP`)
      return errorReply(query, Rcode.NOTIMP)
    }

    if (this.opts.refuseTunnel?.() && this.policy.route(q.name) === 'tunnel') {
      this.counters.rejected++
      this.log.verbose('dns', `${q.name} ${typeName(q.qtype)} → tunnel is down (--fail-closed): REFUSED`)
      const out = errorReply(query, Rcode.REFUSED)
      this.logLine(client, q, 'tunnel', undefined, start, out)
      return out
    }

    const cached = this.opts.cache?.get(q, query)
    if (cached) {
      this.counters.cacheHits++
      if (this.opts.beforeAnswer && this.policy.route(q.name) === 'tunnel') await this.opts.beforeAnswer(q.name, cached)
      const out = this.fit(cached, q, via)
      this.logLine(client, q, 'cache', undefined, start, out)
      return out
    }

    const route: DnsRoute = this.policy.route(q.name)
    let r: ResolveResult
    if (route === 'local' && !this.opts.local) {
      this.counters.rejected++
      this.log.verbose('dns', `${q.name} ${typeName(q.qtype)} → local: no local resolver known, REFUSED`)
      return errorReply(query, Rcode.REFUSED)
    }
    if (route === 'tunnel' && this.opts.emptyFamilies?.some((f) => QTYPE_OF_FAMILY[f] === q.qtype)) {
      // NODATA: the name exists as far as the client knows, it just has no such address.
      const out = errorReply(query, Rcode.NOERROR)
      this.log.verbose('dns', `${q.name} ${typeName(q.qtype)} → empty: no subnet of that family is tunnelled (--dns-all-families)`)
      return out
    }
    this.counters[route]++
    r = await (route === 'tunnel' ? this.opts.tunnel : this.opts.local!).resolve(query, via)
    const h = readHeader(r.answer)
    if (!h || !h.qr || h.id !== q.id) {
      this.log.debug('dns', `${q.name}: malformed answer from ${r.server}, answering SERVFAIL`)
      r = { answer: errorReply(query, Rcode.SERVFAIL)!, server: r.server, ok: false }
    }
    if (!r.ok) this.counters.failed++
    else this.opts.cache?.put(q, r.answer)
    if (r.ok && route === 'tunnel' && this.opts.beforeAnswer) await this.opts.beforeAnswer(q.name, r.answer)
    const out = this.fit(r.answer, q, via)
    this.logLine(client, q, route, r, start, out)
    return out
  }

  /** UDP answers must fit the client's limit; larger ones are cut to TC=1 (client retries on TCP). */
  private fit(answer: Buffer, q: QueryInfo, via: Transport): Buffer | undefined {
    if (via === 'tcp' || answer.length <= q.udpLimit) return answer
    this.counters.truncated++
    return truncateAnswer(answer, q.udpLimit)
  }

  private reject(query: Buffer, client: ClientAddress): Buffer | undefined {
    const h = readHeader(query)
    // Never answer a response (QR=1): two resolvers bouncing errors at each other would loop.
    if (!h || h.qr) {
      this.counters.dropped++
      this.log.debug('dns', `dropping ${query.length} bytes of garbage from ${formatHostPort(client.address, client.port)}`)
      return undefined
    }
    this.counters.rejected++
    this.log.debug('dns', `malformed query from ${formatHostPort(client.address, client.port)} (${query.length} bytes): FORMERR`)
    return errorReply(query, h.opcode === 0 ? Rcode.FORMERR : Rcode.NOTIMP)
  }

  /** The -v line: `[dns] db.corp.internal A → tunnel (10.0.0.2) 3 ms`, `→ cache`, `→ local (…)`. */
  private logLine(client: ClientAddress, q: QueryInfo, how: 'cache' | DnsRoute, r: ResolveResult | undefined, start: number, out: Buffer | undefined): void {
    if (this.opts.onAnswered) {
      const code = out && out.length >= 4 ? out[3] & 0xf : Rcode.SERVFAIL
      const c = formatHostPort(client.address, client.port)
      this.opts.onAnswered({ client: c, qname: q.name, qtype: typeName(q.qtype), route: how, rcode: rcodeName(code), ms: Math.round((performance.now() - start) * 100) / 100 })
    }
    if (!this.log.enabled('verbose')) return
    const ms = performance.now() - start
    const took = ms < 1 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`
    const rcode = out && out.length >= 4 ? out[3] & 0xf : Rcode.SERVFAIL
    // Port 53 is implied: "→ tunnel (10.0.0.2) 3 ms".
    let line = `${q.name} ${typeName(q.qtype)} → ${how}${r ? ` (${r.server.replace(/:53$/, '')})` : ''} ${took}`
    if (rcode !== Rcode.NOERROR) line += ` ${rcodeName(rcode)}`
    if (r && !r.ok) line += ' (no answer from the resolver)'
    if (out && out.length >= 4 && (out[2] & 0x02) !== 0) line += ' truncated'
    this.log.verbose('dns', line)
    if (out && this.log.enabled('debug')) this.log.debug('dns', `${q.name}: ${summarizeAnswer(out) ?? 'undecodable answer'}`)
  }
}
