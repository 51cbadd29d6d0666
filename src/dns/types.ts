/** How a query reached the interceptor; decides truncation and the upstream TCP fallback. */
export type Transport = 'udp' | 'tcp'

/** The local client that sent a query (for logs). */
export interface ClientAddress {
  readonly address: string
  readonly port: number
}

/** An answer and where it came from. */
export interface ResolveResult {
  /** Always a DNS message with the query's id: the real answer, or our SERVFAIL/FORMERR. */
  readonly answer: Buffer
  /** The resolver asked, as "host:port" (for the -v log line). */
  readonly server: string
  /** False when the answer was synthesised by us because the resolver could not be reached. */
  readonly ok: boolean
}

/** Something that answers DNS queries: the tunnel, or the machine's original resolvers. */
export interface Resolver {
  /** Never rejects: failures become a SERVFAIL answer. */
  resolve(query: Buffer, via: Transport): Promise<ResolveResult>
  close(): void
}
