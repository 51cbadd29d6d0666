/**
 * SOCKS5 wire format (RFC 1928, RFC 1929 username/password). Pure: no I/O, no state.
 *
 * Every parser takes all bytes received so far for the current message (starting at its first
 * byte) and answers one of: need more bytes, bad (with the reply code to send, if one applies),
 * or done with the number of bytes consumed — anything after that belongs to the next message
 * (or is early application data the client pipelined behind its request).
 */

export const SOCKS_VERSION = 0x05

/** Authentication methods (RFC 1928 §3). */
export const Method = {
  NONE: 0x00,
  USERPASS: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const

/** Request commands (RFC 1928 §4). */
export const Cmd = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const

/** Address types (RFC 1928 §5). */
export const Atyp = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const

/** Reply codes (RFC 1928 §6). */
export const Rep = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const
export type RepCode = (typeof Rep)[keyof typeof Rep]

/** Result of an incremental parse. `reply`, when set on 'bad', is the REP code to answer with. */
export type Parsed<T> =
  | { readonly status: 'more' }
  | { readonly status: 'bad'; readonly reason: string; readonly reply?: RepCode }
  | { readonly status: 'done'; readonly value: T; readonly consumed: number }

const MORE = { status: 'more' } as const
const bad = (reason: string, reply?: RepCode): Parsed<never> => ({ status: 'bad', reason, reply })

/** Client greeting: the authentication methods it offers. */
export interface Greeting {
  readonly methods: readonly number[]
}

export function parseGreeting(b: Buffer): Parsed<Greeting> {
  if (b.length < 1) return MORE
  if (b[0] !== SOCKS_VERSION) return bad(`not SOCKS5 (version byte ${b[0]})`)
  if (b.length < 2) return MORE
  const n = b[1]!
  if (n === 0) return bad('greeting offers no authentication method')
  if (b.length < 2 + n) return MORE
  return { status: 'done', value: { methods: [...b.subarray(2, 2 + n)] }, consumed: 2 + n }
}

/** Server's method selection: VER METHOD. */
export function buildMethodSelection(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method])
}

/** RFC 1929 credentials, as raw bytes (the RFC does not name an encoding; clients send UTF-8). */
export interface UserPass {
  readonly username: Buffer
  readonly password: Buffer
}

export function parseUserPass(b: Buffer): Parsed<UserPass> {
  if (b.length < 1) return MORE
  // RFC 1929 §2: the sub-negotiation has its own version byte, 0x01.
  if (b[0] !== 0x01) return bad(`bad username/password version ${b[0]}`)
  if (b.length < 2) return MORE
  const ulen = b[1]!
  if (b.length < 2 + ulen + 1) return MORE
  const plen = b[2 + ulen]!
  const end = 3 + ulen + plen
  if (b.length < end) return MORE
  return {
    status: 'done',
    value: { username: b.subarray(2, 2 + ulen), password: b.subarray(3 + ulen, end) },
    consumed: end,
  }
}

/** Sub-negotiation status: 0x00 success, anything else failure (the server then closes). */
export function buildUserPassReply(ok: boolean): Buffer {
  return Buffer.from([0x01, ok ? 0x00 : 0x01])
}

/** A parsed request. `host` is dotted IPv4, RFC 5952 IPv6 text (no brackets) or the name as sent. */
export interface SocksRequest {
  readonly cmd: number
  readonly atyp: 'ipv4' | 'ipv6' | 'domain'
  readonly host: string
  readonly port: number
}

export function parseRequest(b: Buffer): Parsed<SocksRequest> {
  if (b.length < 1) return MORE
  if (b[0] !== SOCKS_VERSION) return bad(`request version ${b[0]} is not 5`, Rep.GENERAL_FAILURE)
  if (b.length < 4) return MORE
  const cmd = b[1]!
  const atyp = b[3]!
  let host: string
  let at: number
  let kind: SocksRequest['atyp']
  if (atyp === Atyp.IPV4) {
    if (b.length < 10) return MORE
    host = `${b[4]}.${b[5]}.${b[6]}.${b[7]}`
    at = 8
    kind = 'ipv4'
  } else if (atyp === Atyp.IPV6) {
    if (b.length < 22) return MORE
    host = formatIpv6(b.subarray(4, 20))
    at = 20
    kind = 'ipv6'
  } else if (atyp === Atyp.DOMAIN) {
    if (b.length < 5) return MORE
    const len = b[4]!
    if (b.length < 5 + len + 2) return MORE
    const name = b.subarray(5, 5 + len)
    // A name is resolved by the remote sshd; refuse bytes no resolver accepts (controls,
    // spaces, NUL) instead of handing them on — and an empty name can never resolve.
    if (len === 0 || name.some((c) => c <= 0x20 || c === 0x7f)) {
      return bad('request carries an empty or malformed domain name', Rep.HOST_UNREACHABLE)
    }
    host = name.toString('utf8')
    at = 5 + len
    kind = 'domain'
  } else {
    // The address length is unknown, so nothing after this byte can be framed.
    return bad(`address type ${atyp} not supported`, Rep.ADDRESS_TYPE_NOT_SUPPORTED)
  }
  const port = b.readUInt16BE(at)
  return { status: 'done', value: { cmd, atyp: kind, host, port }, consumed: at + 2 }
}

/**
 * A reply: VER REP RSV ATYP BND.ADDR BND.PORT — always complete (10 bytes for IPv4, 22 for
 * IPv6), because clients read the whole reply before reporting REP; a truncated one makes them
 * say "socket closed" instead of "connection refused". The bound address defaults to 0.0.0.0:0
 * like OpenSSH's `ssh -D`: the real one is on the far side of the SSH server, and clients
 * ignore it for CONNECT.
 */
export function buildReply(rep: RepCode, bound: { host: string; port: number } = { host: '0.0.0.0', port: 0 }): Buffer {
  const v6 = bound.host.includes(':') ? parseIpv6(bound.host) : undefined
  const v4 = v6 ? undefined : parseIpv4(bound.host)
  const addr = v6 ?? v4 ?? Buffer.alloc(4)
  const out = Buffer.alloc(4 + addr.length + 2)
  out[0] = SOCKS_VERSION
  out[1] = rep
  out[2] = 0
  out[3] = v6 ? Atyp.IPV6 : Atyp.IPV4
  addr.copy(out, 4)
  out.writeUInt16BE(bound.port & 0xffff, 4 + addr.length)
  return out
}

// ---- client side, used by tests and by anything that needs to speak SOCKS5 outward ----

export function buildGreeting(methods: readonly number[]): Buffer {
  return Buffer.from([SOCKS_VERSION, methods.length, ...methods])
}

export function buildUserPass(username: string, password: string): Buffer {
  const u = Buffer.from(username, 'utf8')
  const p = Buffer.from(password, 'utf8')
  if (u.length > 255 || p.length > 255) throw new RangeError('SOCKS5 username/password longer than 255 bytes')
  return Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p])
}

/** Encodes a request; IP literals become ATYP IPv4/IPv6, anything else a domain name. */
export function buildRequest(cmd: number, host: string, port: number): Buffer {
  const v6 = host.includes(':') ? parseIpv6(host) : undefined
  const v4 = v6 ? undefined : parseIpv4(host)
  let addr: Buffer
  if (v6) addr = Buffer.concat([Buffer.from([Atyp.IPV6]), v6])
  else if (v4) addr = Buffer.concat([Buffer.from([Atyp.IPV4]), v4])
  else {
    const name = Buffer.from(host, 'utf8')
    if (name.length > 255) throw new RangeError('SOCKS5 domain name longer than 255 bytes')
    addr = Buffer.concat([Buffer.from([Atyp.DOMAIN, name.length]), name])
  }
  const port2 = Buffer.alloc(2)
  port2.writeUInt16BE(port)
  return Buffer.concat([Buffer.from([SOCKS_VERSION, cmd, 0]), addr, port2])
}

// ---- address helpers ----

function parseIpv4(s: string): Buffer | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (!m) return undefined
  const parts = m.slice(1).map(Number)
  return parts.every((n) => n <= 255) ? Buffer.from(parts) : undefined
}

/** Parses IPv6 text (with optional ::, embedded IPv4, no zone) to 16 bytes. */
export function parseIpv6(s: string): Buffer | undefined {
  let text = s
  const tail: number[] = []
  const v4m = /^(.*:)(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text)
  if (v4m) {
    const v4 = parseIpv4(v4m[2]!)
    if (!v4) return undefined
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
    // "::ffff:1.2.3.4" keeps its "::"; "64:ff9b:0:0:0:0:1.2.3.4" drops the lone separator.
    const prefix = v4m[1]!
    text = prefix.endsWith('::') ? prefix : prefix.slice(0, -1)
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const group = (p: string): number[] | undefined => {
    if (p === '') return []
    const out: number[] = []
    for (const g of p.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  const head = group(halves[0]!)
  const rest = halves.length === 2 ? group(halves[1]!) : []
  if (!head || !rest) return undefined
  const known = head.length + rest.length + tail.length
  let groups: number[]
  if (halves.length === 2) {
    if (known > 7) return undefined
    groups = [...head, ...new Array<number>(8 - known).fill(0), ...rest, ...tail]
  } else {
    if (known !== 8) return undefined
    groups = [...head, ...tail]
  }
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  return out
}

/**
 * Formats 16 bytes as RFC 5952 text: lower-case, no leading zeros, the longest run (≥ 2) of
 * zero groups as "::", and IPv4-mapped addresses as ::ffff:a.b.c.d.
 */
export function formatIpv6(b: Buffer): string {
  const g: number[] = []
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(i * 2))
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  }
  let bestAt = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      bestAt = i
      bestLen = j - i
    }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (bestAt < 0) return hex.join(':')
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`
}
