/**
 * HTTP/1.x wire helpers for the HTTP proxy (RFC 9110, RFC 9112). Pure: no I/O.
 *
 * Bodies are never decoded or re-encoded: the proxy passes body bytes through unchanged and
 * only needs to know where a message ends, so chunked stays chunked end to end and
 * Transfer-Encoding is forwarded as received.
 */
import { formatIpv6, parseIpv6 } from './socks5-wire'

/** Header fields in received order, names as sent (matching is case-insensitive). */
export type Headers = readonly (readonly [string, string])[]

export interface RequestHead {
  readonly method: string
  readonly target: string
  /** Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1
  readonly headers: Headers
}

export interface ResponseHead {
  readonly minor: 0 | 1
  readonly status: number
  readonly reason: string
  readonly headers: Headers
}

export type HeadResult<T> =
  | { readonly status: 'more' }
  | { readonly status: 'bad'; readonly reason: string; readonly code: 400 | 431 }
  | { readonly status: 'done'; readonly head: T; readonly consumed: number }

/** Default limit on a message head (start line + fields). */
export const MAX_HEAD = 64 * 1024

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * Splits a head into start line and fields. Tolerates bare LF line ends and skips empty lines
 * before the start line (RFC 9112 §2.2). Obsolete line folding and whitespace before the colon
 * are rejected (§5.1, §5.2) — they are classic request-smuggling vectors.
 */
function parseLines(b: Buffer, max: number): HeadResult<{ start: string; headers: [string, string][] }> {
  let pos = 0
  while (pos < b.length && (b[pos] === 0x0d || b[pos] === 0x0a)) pos++
  let start: string | undefined
  const headers: [string, string][] = []
  for (;;) {
    const nl = b.indexOf(0x0a, pos)
    if (nl < 0) {
      return b.length > max ? { status: 'bad', reason: 'message head too large', code: 431 } : { status: 'more' }
    }
    if (nl + 1 > max) return { status: 'bad', reason: 'message head too large', code: 431 }
    const end = nl > pos && b[nl - 1] === 0x0d ? nl - 1 : nl
    const line = b.toString('latin1', pos, end)
    pos = nl + 1
    if (/[\r\0]/.test(line)) return { status: 'bad', reason: 'stray CR or NUL in message head', code: 400 }
    if (start === undefined) {
      start = line
      continue
    }
    if (line === '') return { status: 'done', head: { start, headers }, consumed: pos }
    if (line[0] === ' ' || line[0] === '\t') return { status: 'bad', reason: 'obsolete header line folding', code: 400 }
    const colon = line.indexOf(':')
    const name = colon > 0 ? line.slice(0, colon) : ''
    // Quote only the name: the value may be credentials (a mistyped Proxy-Authorization line).
    if (!TOKEN.test(name)) return { status: 'bad', reason: `malformed header line "${line.split(/[:\s]/, 1)[0]!.slice(0, 40)}…"`, code: 400 }
    headers.push([name, line.slice(colon + 1).trim()])
  }
}

/**
 * Hides URL userinfo (`http://user:pass@host` → `http://…@host`) in text quoted back in a log
 * line or error: the reason strings of parse failures end up in `-v` output.
 */
export function redactUserinfo(s: string): string {
  return s.replace(/[^\s/?#@]*@/g, '…@')
}

/** Parses a request head from the bytes received so far. */
export function parseRequestHead(b: Buffer, max = MAX_HEAD): HeadResult<RequestHead> {
  const r = parseLines(b, max)
  if (r.status !== 'done') return r
  const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.(\d)$/.exec(r.head.start)
  if (!m) return { status: 'bad', reason: `malformed request line "${redactUserinfo(r.head.start).slice(0, 60)}"`, code: 400 }
  const head: RequestHead = { method: m[1]!, target: m[2]!, minor: m[3] === '0' ? 0 : 1, headers: r.head.headers }
  return { status: 'done', head, consumed: r.consumed }
}

/** Parses a response head from the bytes received so far. */
export function parseResponseHead(b: Buffer, max = MAX_HEAD): HeadResult<ResponseHead> {
  const r = parseLines(b, max)
  if (r.status !== 'done') return r
  const m = /^HTTP\/1\.(\d) (\d{3})(?: (.*))?$/.exec(r.head.start)
  if (!m) return { status: 'bad', reason: `malformed status line "${r.head.start.slice(0, 60)}"`, code: 400 }
  const head: ResponseHead = { minor: m[1] === '0' ? 0 : 1, status: Number(m[2]), reason: m[3] ?? '', headers: r.head.headers }
  return { status: 'done', head, consumed: r.consumed }
}

/** All values of a field (case-insensitive name). */
export function headerValues(h: Headers, name: string): string[] {
  const n = name.toLowerCase()
  return h.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v)
}

/** Comma-separated tokens of a list field, lower-cased (e.g. Connection: close, Upgrade). */
export function headerTokens(h: Headers, name: string): string[] {
  return headerValues(h, name)
    .flatMap((v) => v.split(','))
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '')
}

/** Where a proxied request goes. `authority` is what the origin's Host field gets. */
export type ProxyTarget =
  | { readonly kind: 'connect'; readonly host: string; readonly port: number }
  | { readonly kind: 'forward'; readonly host: string; readonly port: number; readonly authority: string; readonly path: string }

/** "host:port" / "[v6]:port" → host (IPv6 canonical, no brackets) and port; undefined if malformed. */
export function parseAuthority(s: string, defaultPort?: number): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:@/?#[\]]+))(?::(\d{1,5}))?$/.exec(s)
  if (!m) return undefined
  const port = m[3] !== undefined ? Number(m[3]) : defaultPort
  if (port === undefined || port < 1 || port > 65535) return undefined
  if (m[1] !== undefined) {
    const v6 = parseIpv6(m[1])
    return v6 ? { host: formatIpv6(v6), port } : undefined
  }
  const host = m[2]!
  if (/[\x00-\x20\x7f"<>\\^`{|}%]/.test(host)) return undefined
  return { host, port }
}

/**
 * Interprets the request target. CONNECT takes authority-form; everything else must be an
 * absolute http:// URI (RFC 9112 §3.2.2) — an origin-form target means the client did not know
 * it talks to a proxy, and https:// must go through CONNECT because we do not speak TLS.
 */
export function parseTarget(method: string, target: string): ProxyTarget | { error: string } {
  if (method === 'CONNECT') {
    const a = parseAuthority(target)
    return a ? { kind: 'connect', ...a } : { error: `CONNECT needs host:port, got "${target.slice(0, 80)}"` }
  }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(target)
  if (!m) return { error: 'this is a proxy: the request must use an absolute http:// URL' }
  if (m[1]!.toLowerCase() !== 'http') return { error: `cannot proxy ${m[1]}:// URLs as plain requests (use CONNECT for https)` }
  // userinfo ("user:pw@host") is deprecated and never sent to the origin (RFC 9110 §4.2.4).
  const authority = m[2]!.replace(/^[^@]*@/, '')
  const a = parseAuthority(authority, 80)
  if (!a) return { error: `bad host in URL "${redactUserinfo(target).slice(0, 80)}"` }
  let path = m[3]!
  if (path === '' || path.startsWith('?')) path = '/' + path
  return { kind: 'forward', ...a, authority, path }
}

/** How the end of a message body is found (RFC 9112 §6.3). */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'close' }

function contentLength(h: Headers): number | undefined | { error: string } {
  const vals = headerValues(h, 'content-length').flatMap((v) => v.split(',')).map((v) => v.trim())
  if (vals.length === 0) return undefined
  // Repeated identical values are allowed (§6.3 item 5); differing ones are an attack or a bug.
  if (!vals.every((v) => /^\d{1,15}$/.test(v) && v === vals[0])) return { error: 'invalid Content-Length' }
  return Number(vals[0])
}

/** Request body framing. Both Transfer-Encoding and Content-Length is refused (smuggling). */
export function requestFraming(h: Headers): Framing | { error: string } {
  const te = headerTokens(h, 'transfer-encoding')
  const cl = contentLength(h)
  if (te.length > 0) {
    if (cl !== undefined) return { error: 'both Transfer-Encoding and Content-Length' }
    if (te[te.length - 1] !== 'chunked') return { error: 'request Transfer-Encoding must end with chunked' }
    return { kind: 'chunked' }
  }
  if (cl === undefined) return { kind: 'none' }
  if (typeof cl === 'object') return cl
  return cl === 0 ? { kind: 'none' } : { kind: 'length', length: cl }
}

/** Response body framing, which depends on the request method and the status. */
export function responseFraming(method: string, status: number, h: Headers): Framing | { error: string } {
  if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304) return { kind: 'none' }
  const te = headerTokens(h, 'transfer-encoding')
  if (te.length > 0) return te[te.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' }
  const cl = contentLength(h)
  if (cl === undefined) return { kind: 'close' }
  if (typeof cl === 'object') return cl
  return cl === 0 ? { kind: 'none' } : { kind: 'length', length: cl }
}

/**
 * Finds the end of a chunked body without decoding it. Feed bytes as they arrive; each call
 * says how many of them belong to the body and whether it is complete (anything after belongs
 * to the next message). Malformed input sets `error` instead of throwing.
 */
export class ChunkedScanner {
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size'
  private line = ''
  private remaining = 0
  private trailerBytes = 0
  error: string | undefined

  get done(): boolean {
    return this.state === 'done'
  }

  feed(b: Buffer): number {
    let i = 0
    while (i < b.length && this.state !== 'done' && this.error === undefined) {
      if (this.state === 'data') {
        const n = Math.min(this.remaining, b.length - i)
        i += n
        this.remaining -= n
        if (this.remaining === 0) this.state = 'data-end'
        continue
      }
      const c = b[i++]!
      if (c !== 0x0a) {
        this.line += String.fromCharCode(c)
        // A size line is short; a trailer section is bounded like a head.
        if (this.state !== 'trailer' ? this.line.length > 1024 : ++this.trailerBytes > MAX_HEAD) this.error = 'chunk framing line too long'
        continue
      }
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line
      this.line = ''
      if (this.state === 'size') {
        const m = /^([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/.exec(line)
        if (!m) {
          this.error = 'bad chunk size line'
          break
        }
        this.remaining = parseInt(m[1]!, 16)
        this.state = this.remaining === 0 ? 'trailer' : 'data'
      } else if (this.state === 'data-end') {
        if (line !== '') this.error = 'chunk data longer than its size'
        else this.state = 'size'
      } else if (line === '') {
        this.state = 'done'
      }
    }
    return i
  }
}

/** Fields a proxy must not forward (RFC 9110 §7.6.1), plus the proxy's own credentials. */
const HOP_BY_HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-authenticate'])

/** Removes hop-by-hop fields, including every field the Connection header names. */
export function stripHopByHop(h: Headers): [string, string][] {
  const named = new Set([...headerTokens(h, 'connection'), ...headerTokens(h, 'proxy-connection')])
  // Connection must not make us drop the message framing or Host.
  for (const keep of ['transfer-encoding', 'content-length', 'host']) named.delete(keep)
  return h.filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()) && !named.has(k.toLowerCase())).map(([k, v]) => [k, v])
}

/** Whether a request asks for a protocol upgrade (WebSocket): Connection: upgrade + Upgrade. */
export function wantsUpgrade(head: RequestHead): boolean {
  return headerTokens(head.headers, 'connection').includes('upgrade') && headerValues(head.headers, 'upgrade').length > 0
}

/**
 * The request as sent to the origin: origin-form target, Host replaced by the URL's authority
 * (RFC 9112 §3.2.2), hop-by-hop fields removed. One upstream connection serves one request, so
 * it says Connection: close — or keeps Upgrade for a WebSocket handshake.
 */
export function buildOriginRequest(head: RequestHead, t: Extract<ProxyTarget, { kind: 'forward' }>): Buffer {
  const upgrade = wantsUpgrade(head)
  const fields = stripHopByHop(head.headers).filter(([k]) => k.toLowerCase() !== 'host')
  const lines = [`${head.method} ${t.path} HTTP/1.${head.minor}`, `Host: ${t.authority}`, ...fields.map(([k, v]) => `${k}: ${v}`)]
  if (upgrade) lines.push(...headerValues(head.headers, 'upgrade').map((v) => `Upgrade: ${v}`), 'Connection: Upgrade')
  else lines.push('Connection: close')
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1')
}

/**
 * The response head as sent to the client: our own HTTP/1.1 version, hop-by-hop fields
 * removed, and Connection: close when this client connection ends after the response.
 * A 101 keeps its Upgrade field.
 */
export function buildClientResponse(r: ResponseHead, keepAlive: boolean): Buffer {
  const lines = [`HTTP/1.1 ${r.status} ${r.reason}`.trimEnd(), ...stripHopByHop(r.headers).map(([k, v]) => `${k}: ${v}`)]
  if (r.status === 101) lines.push(...headerValues(r.headers, 'upgrade').map((v) => `Upgrade: ${v}`), 'Connection: Upgrade')
  else if (!keepAlive) lines.push('Connection: close')
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1')
}

/** A complete small response generated by the proxy itself (errors, 407, CONNECT 200). */
export function buildSimpleResponse(status: number, reason: string, body = '', extra: readonly string[] = [], keepAlive = false): Buffer {
  const b = Buffer.from(body, 'utf8')
  const lines = [`HTTP/1.1 ${status} ${reason}`, ...extra]
  if (body !== '' || status >= 400) lines.push('Content-Type: text/plain; charset=utf-8', `Content-Length: ${b.length}`)
  if (!keepAlive) lines.push('Connection: close')
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b])
}

/** Decodes `Proxy-Authorization: Basic base64(user:pass)`; undefined when absent or not Basic. */
export function parseBasicAuth(value: string | undefined): { username: string; password: string } | undefined {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)$/i.exec(value?.trim() ?? '')
  if (!m) return undefined
  const text = Buffer.from(m[1]!, 'base64').toString('utf8')
  const colon = text.indexOf(':')
  if (colon < 0) return undefined
  return { username: text.slice(0, colon), password: text.slice(colon + 1) }
}
