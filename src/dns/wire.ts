/**
 * DNS message helpers that work on the raw bytes (RFC 1035 4.1), pure and allocation-light:
 * the hot path (cache key, id remap, TTL rewrite, truncation) never fully decodes a message.
 * Every function returns undefined on malformed input instead of throwing: bytes come from
 * any local process and from the remote resolver, and neither may crash us.
 */

export const HEADER_SIZE = 12
export const TYPE_SOA = 6
export const TYPE_OPT = 41
/** Classic UDP limit without EDNS0 (RFC 1035 4.2.1). */
export const UDP_MIN = 512

export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const

const QR = 0x8000
const TC = 0x0200
const RD = 0x0100
const RA = 0x0080
const CD = 0x0010

/** The fixed 12-byte header. */
export interface Header {
  readonly id: number
  readonly flags: number
  readonly qr: boolean
  readonly opcode: number
  readonly tc: boolean
  readonly rcode: number
  readonly qdcount: number
  readonly ancount: number
  readonly nscount: number
  readonly arcount: number
}

export function readHeader(msg: Buffer): Header | undefined {
  if (msg.length < HEADER_SIZE) return undefined
  const flags = msg.readUInt16BE(2)
  return {
    id: msg.readUInt16BE(0),
    flags,
    qr: (flags & QR) !== 0,
    opcode: (flags >> 11) & 0xf,
    tc: (flags & TC) !== 0,
    rcode: flags & 0xf,
    qdcount: msg.readUInt16BE(4),
    ancount: msg.readUInt16BE(6),
    nscount: msg.readUInt16BE(8),
    arcount: msg.readUInt16BE(10),
  }
}

/** What the service needs from a query, from one cheap pass (no full decode). */
export interface QueryInfo {
  readonly id: number
  readonly flags: number
  readonly opcode: number
  /** Presentation form without the trailing dot ("." for the root); odd bytes as \DDD. */
  readonly name: string
  readonly qtype: number
  readonly qclass: number
  /** Offset just past the (first) question. */
  readonly questionEnd: number
  /** Largest UDP answer the client accepts: 512, or its EDNS0 payload size (RFC 6891 6.2.5). */
  readonly udpLimit: number
  /** EDNS0 DO bit: the client wants DNSSEC records. */
  readonly dnssecOk: boolean
  /** Cache key: lower-cased name, type, class, DO and CD bits. */
  readonly key: string
}

/**
 * Parses the header, the first question and the EDNS0 OPT record of a query. Undefined when
 * the message is not a well-formed query with exactly one question.
 */
export function parseQuery(msg: Buffer): QueryInfo | undefined {
  const h = readHeader(msg)
  if (!h || h.qr || h.qdcount !== 1) return undefined
  const q = readName(msg, HEADER_SIZE)
  if (!q || q.end + 4 > msg.length) return undefined
  const qtype = msg.readUInt16BE(q.end)
  const qclass = msg.readUInt16BE(q.end + 2)
  const questionEnd = q.end + 4
  const rrs = walkRecords(msg, questionEnd, h.ancount + h.nscount + h.arcount, h.ancount, h.nscount)
  if (!rrs) return undefined
  let udpLimit = UDP_MIN
  let dnssecOk = false
  for (const rr of rrs) {
    if (rr.type !== TYPE_OPT || rr.section !== 2) continue
    udpLimit = clampUdp(rr.klass)
    // The OPT "TTL" holds extended rcode, version and flags; DO is its top flag bit.
    dnssecOk = (msg.readUInt32BE(rr.ttlOffset) & 0x8000) !== 0
  }
  const cd = (h.flags & CD) !== 0
  const lower = q.name.toLowerCase()
  return {
    id: h.id,
    flags: h.flags,
    opcode: h.opcode,
    name: q.name,
    qtype,
    qclass,
    questionEnd,
    udpLimit,
    dnssecOk,
    key: `${lower}|${qtype}|${qclass}|${dnssecOk ? 1 : 0}${cd ? 1 : 0}`,
  }
}

/** RFC 6891 6.2.5: values below 512 are treated as 512; the 16-bit field caps it at 65535. */
function clampUdp(size: number): number {
  return Math.min(65535, Math.max(UDP_MIN, size))
}

/** The client's UDP answer size limit (512 or its EDNS0 size); 512 when unparseable. */
export function udpLimit(query: Buffer): number {
  return parseQuery(query)?.udpLimit ?? UDP_MIN
}

interface Name {
  readonly name: string
  /** Offset just past the name where it starts (a pointer ends it). */
  readonly end: number
}

/** Reads a possibly compressed name (RFC 1035 4.1.4). Bounded: ≤ 255 bytes, ≤ 128 jumps. */
export function readName(msg: Buffer, start: number): Name | undefined {
  let off = start
  let end = -1
  let hops = 0
  let wireLen = 0
  const labels: string[] = []
  for (;;) {
    if (off >= msg.length) return undefined
    const len = msg[off]
    if (len === 0) {
      if (end < 0) end = off + 1
      break
    }
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (off + 1 >= msg.length || ++hops > 128) return undefined
      if (end < 0) end = off + 2
      off = ((len & 0x3f) << 8) | msg[off + 1]
      continue
    }
    if (kind !== 0) return undefined // 0x40/0x80: obsolete extended label types
    wireLen += len + 1
    if (wireLen > 255 || off + 1 + len > msg.length) return undefined
    labels.push(labelText(msg, off + 1, len))
    off += 1 + len
  }
  return { name: labels.length === 0 ? '.' : labels.join('.'), end }
}

/** Label bytes as text; dots, backslashes and non-printable bytes escaped as \DDD. */
function labelText(msg: Buffer, start: number, len: number): string {
  let plain = true
  for (let i = start; i < start + len; i++) {
    const c = msg[i]
    if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) {
      plain = false
      break
    }
  }
  if (plain) return msg.toString('latin1', start, start + len)
  let s = ''
  for (let i = start; i < start + len; i++) {
    const c = msg[i]
    s += c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c ? '\\' + String(c).padStart(3, '0') : String.fromCharCode(c)
  }
  return s
}

/** Offset just past a name, without decoding it; -1 when malformed. */
export function skipName(msg: Buffer, off: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (off >= msg.length) return -1
    const len = msg[off]
    if (len === 0) return off + 1
    if ((len & 0xc0) === 0xc0) return off + 2 <= msg.length ? off + 2 : -1
    if ((len & 0xc0) !== 0) return -1
    off += 1 + len
  }
  return -1
}

/** Where one resource record sits in a message. Section: 0 answer, 1 authority, 2 additional. */
export interface RrRef {
  readonly section: 0 | 1 | 2
  readonly start: number
  readonly type: number
  readonly klass: number
  readonly ttlOffset: number
  readonly rdataOffset: number
  readonly rdlength: number
}

function walkRecords(msg: Buffer, from: number, count: number, ancount: number, nscount: number): RrRef[] | undefined {
  const out: RrRef[] = []
  let off = from
  for (let i = 0; i < count; i++) {
    const start = off
    off = skipName(msg, off)
    if (off < 0 || off + 10 > msg.length) return undefined
    const rdlength = msg.readUInt16BE(off + 8)
    if (off + 10 + rdlength > msg.length) return undefined
    out.push({
      section: i < ancount ? 0 : i < ancount + nscount ? 1 : 2,
      start,
      type: msg.readUInt16BE(off),
      klass: msg.readUInt16BE(off + 2),
      ttlOffset: off + 4,
      rdataOffset: off + 10,
      rdlength,
    })
    off += 10 + rdlength
  }
  return out
}

/** A parsed layout: where the question ends and every record's position. */
export interface Layout {
  readonly header: Header
  readonly questionEnd: number
  readonly records: RrRef[]
}

/** Walks the whole message (questions and all records). Undefined when anything is out of bounds. */
export function layout(msg: Buffer): Layout | undefined {
  const header = readHeader(msg)
  if (!header) return undefined
  let off = HEADER_SIZE
  for (let i = 0; i < header.qdcount; i++) {
    off = skipName(msg, off)
    if (off < 0 || off + 4 > msg.length) return undefined
    off += 4
  }
  const records = walkRecords(msg, off, header.ancount + header.nscount + header.arcount, header.ancount, header.nscount)
  return records && { header, questionEnd: off, records }
}

/** Sets the message id in place (bytes 0-1). */
export function setId(msg: Buffer, id: number): void {
  if (msg.length >= 2) msg.writeUInt16BE(id & 0xffff, 0)
}

/** A copy of msg with another id. */
export function withId(msg: Buffer, id: number): Buffer {
  const out = Buffer.from(msg)
  setId(out, id)
  return out
}

export function rcodeOf(msg: Buffer): number | undefined {
  return msg.length >= HEADER_SIZE ? msg[3] & 0xf : undefined
}

/**
 * An error reply to a query: same id, opcode, RD and CD, first question copied when
 * readable; QR and RA set. Undefined when not even the header is readable.
 */
export function errorReply(query: Buffer, rcode: number): Buffer | undefined {
  const h = readHeader(query)
  if (!h) return undefined
  let qEnd = HEADER_SIZE
  if (h.qdcount >= 1) {
    const end = skipName(query, HEADER_SIZE)
    if (end > 0 && end + 4 <= query.length) qEnd = end + 4
  }
  const out = Buffer.alloc(qEnd)
  query.copy(out, 0, 0, qEnd)
  const flags = QR | (h.flags & (0x7800 | RD | CD)) | RA | (rcode & 0xf)
  out.writeUInt16BE(flags, 2)
  out.writeUInt16BE(qEnd > HEADER_SIZE ? 1 : 0, 4)
  out.writeUInt32BE(0, 6) // ancount, nscount
  out.writeUInt16BE(0, 10)
  return out
}

/**
 * Fits an answer into a UDP size limit (RFC 1035 4.2.1, RFC 2181 9): when it is larger, the
 * reply keeps header, question and the OPT record, drops every other record and sets TC=1
 * so the client retries over TCP. Limits below 512 count as 512. Answers that fit are
 * returned as is; undefined when the answer is malformed and too large.
 */
export function truncateAnswer(answer: Buffer, limit: number): Buffer | undefined {
  const max = Math.max(UDP_MIN, limit)
  if (answer.length <= max) return answer
  const l = layout(answer)
  if (!l) return undefined
  const opt = l.records.find((rr) => rr.type === TYPE_OPT && rr.section === 2)
  const optBytes = opt ? answer.subarray(opt.start, opt.rdataOffset + opt.rdlength) : undefined
  const qEnd = l.header.qdcount === 1 ? l.questionEnd : HEADER_SIZE
  const keepOpt = optBytes !== undefined && qEnd + optBytes.length <= max
  const out = Buffer.alloc(qEnd + (keepOpt ? optBytes.length : 0))
  answer.copy(out, 0, 0, qEnd)
  if (keepOpt) optBytes.copy(out, qEnd)
  out.writeUInt16BE(answer.readUInt16BE(2) | TC, 2)
  out.writeUInt16BE(qEnd > HEADER_SIZE ? 1 : 0, 4)
  out.writeUInt32BE(0, 6)
  out.writeUInt16BE(keepOpt ? 1 : 0, 10)
  return out
}

/**
 * True when the answer's first question equals the query's (name compared case-insensitively,
 * type and class exactly): guards against a late answer landing on a reused id.
 */
export function sameQuestion(query: Buffer, answer: Buffer): boolean {
  const a = readQuestion(query)
  const b = readQuestion(answer)
  return a !== undefined && b !== undefined && a === b
}

/** "name|type|class" of the first question, name lower-cased; undefined when unreadable. */
export function readQuestion(msg: Buffer): string | undefined {
  if (msg.length < HEADER_SIZE || msg.readUInt16BE(4) < 1) return undefined
  const q = readName(msg, HEADER_SIZE)
  if (!q || q.end + 4 > msg.length) return undefined
  return `${q.name.toLowerCase()}|${msg.readUInt16BE(q.end)}|${msg.readUInt16BE(q.end + 2)}`
}

const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV',
  35: 'NAPTR', 41: 'OPT', 43: 'DS', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 50: 'NSEC3', 52: 'TLSA',
  64: 'SVCB', 65: 'HTTPS', 255: 'ANY', 257: 'CAA',
}

/** "AAAA", or "TYPE1234" for types without a mnemonic (RFC 3597). */
export function typeName(t: number): string {
  return TYPE_NAMES[t] ?? `TYPE${t}`
}

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED']

export function rcodeName(r: number): string {
  return RCODE_NAMES[r] ?? `RCODE${r}`
}

/** errorReply that always yields a message: a bare header with id 0 when the query is unreadable. */
export function failureReply(query: Buffer, rcode: number): Buffer {
  return errorReply(query, rcode) ?? errorReply(Buffer.alloc(HEADER_SIZE), rcode)!
}
