import * as dnsPacket from 'dns-packet'

/**
 * A one-line summary of an answer's records for -vv logs ("A 10.0.0.5, CNAME db1.corp"),
 * using dns-packet's full decoder — only when debug logging is on, never on the hot path.
 * Undefined when dns-packet cannot decode the message (it throws on many oddities).
 */
export function summarizeAnswer(msg: Buffer, max = 4): string | undefined {
  let p: dnsPacket.Packet
  try {
    p = dnsPacket.decode(msg)
  } catch {
    return undefined
  }
  const answers = p.answers ?? []
  const parts = answers.slice(0, max).map((a) => `${a.type} ${dataText((a as { data?: unknown }).data)}`)
  if (answers.length > max) parts.push(`… ${answers.length - max} more`)
  return parts.length === 0 ? 'no records' : parts.join(', ')
}

function dataText(d: unknown): string {
  if (typeof d === 'string') return d
  if (Buffer.isBuffer(d)) return `${d.length} bytes`
  if (Array.isArray(d)) return d.map((x) => (Buffer.isBuffer(x) ? x.toString() : String(x))).join(' ')
  if (d && typeof d === 'object') {
    const o = d as Record<string, unknown>
    if (typeof o.exchange === 'string') return `${o.preference ?? ''} ${o.exchange}`.trim()
    if (typeof o.target === 'string') return `${o.target}:${o.port}`
    if (typeof o.mname === 'string') return `${o.mname}`
  }
  return '…'
}
