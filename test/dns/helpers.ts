import net from 'node:net'
import * as dnsPacket from 'dns-packet'
import { FrameDecoder, frame } from '../../src/dns/framing'
import type { Destination } from '../../src/router/types'
import { FakeDialer } from '../fakes/fake-dialer'

/** A query built with dns-packet. edns: the OPT UDP payload size; dnssecOk sets DO. */
export function makeQuery(name: string, type: dnsPacket.RecordType = 'A', opts: { id?: number; edns?: number; dnssecOk?: boolean } = {}): Buffer {
  const additionals: dnsPacket.Answer[] = []
  if (opts.edns !== undefined) {
    additionals.push({ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer)
  }
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals,
  })
}

export interface AnswerSpec {
  answers?: dnsPacket.Answer[]
  authorities?: dnsPacket.Answer[]
  rcode?: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED'
}

/** An answer to `query` (same id and question). */
export function makeAnswer(query: Buffer, spec: AnswerSpec = {}): Buffer {
  const q = dnsPacket.decode(query)
  const rcodes = { NOERROR: 0, NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 }
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcodes[spec.rcode ?? 'NOERROR'],
    questions: q.questions,
    answers: spec.answers ?? [],
    authorities: spec.authorities ?? [],
  })
}

export function a(name: string, ip: string, ttl = 300): dnsPacket.Answer {
  return { type: 'A', name, ttl, class: 'IN', data: ip }
}

export function soa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    type: 'SOA',
    name: zone,
    ttl,
    class: 'IN',
    data: { mname: `ns.${zone}`, rname: `admin.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  }
}

/** An answer with n A records: 16 bytes each (compressed name), so n ≈ size / 16. */
export function bigAnswer(query: Buffer, n: number): Buffer {
  const name = dnsPacket.decode(query).questions![0].name
  const answers = Array.from({ length: n }, (_, i) => a(name, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`))
  return makeAnswer(query, { answers })
}

export type Responder = (q: dnsPacket.Packet, raw: Buffer) => { answer?: Buffer | Buffer[]; delayMs?: number; close?: boolean } | undefined

/** Default behaviour: A 10.0.0.<len(name)> for everything, TTL 300. */
export const defaultResponder: Responder = (q, raw) => ({ answer: makeAnswer(raw, { answers: [a(q.questions![0].name, `10.0.0.${q.questions![0].name.length % 250}`)] }) })

/**
 * An in-process DNS-over-TCP server on 127.0.0.1 that handles pipelined queries. The
 * responder decides the answer and a delay per query, so answers can come back out of order.
 */
export class FakeTcpDns {
  readonly server: net.Server
  readonly sockets = new Set<net.Socket>()
  queries: dnsPacket.Packet[] = []
  connections = 0
  constructor(public responder: Responder = defaultResponder) {
    this.server = net.createServer((s) => this.serve(s))
  }
  async start(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    return (this.server.address() as net.AddressInfo).port
  }
  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }
  private serve(s: net.Socket): void {
    this.connections++
    this.sockets.add(s)
    s.on('close', () => this.sockets.delete(s))
    s.on('error', () => {})
    const dec = new FrameDecoder()
    s.on('data', (chunk: Buffer) => {
      for (const f of dec.push(chunk).frames) {
        const raw = Buffer.from(f)
        const q = dnsPacket.decode(raw)
        this.queries.push(q)
        const r = this.responder(q, raw)
        if (!r) continue
        const send = (): void => {
          for (const m of r.answer === undefined ? [] : Array.isArray(r.answer) ? r.answer : [r.answer]) if (!s.destroyed) s.write(frame(m))
          if (r.close) s.destroy()
        }
        if (r.delayMs) setTimeout(send, r.delayMs)
        else send()
      }
    })
  }
  killAll(): void {
    for (const s of this.sockets) s.destroy()
  }
  async stop(): Promise<void> {
    this.killAll()
    await new Promise<void>((r) => this.server.close(() => r()))
  }
}

/** The fake Dialer (test/fakes) connecting to loopback ports instead of opening SSH channels; dst → local port. */
export function loopbackDialer(portFor: (dst: Destination) => number): FakeDialer {
  return new FakeDialer({ allowHalfOpen: false }).otherwise({ port: portFor })
}

/** A decoded record, loosely typed for assertions. */
export interface Rr {
  type: string
  name: string
  ttl?: number
  class?: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data?: any
}

/** dns-packet's decode with the fields tests look at (its typings lack flag_tc and rcode). */
export interface Decoded {
  id: number
  type: string
  flags: number
  flag_tc: boolean
  rcode: string
  questions: { name: string; type: string; class: string }[]
  answers: Rr[]
  authorities: Rr[]
  additionals: Rr[]
}

export function decode(b: Buffer): Decoded {
  return dnsPacket.decode(b) as unknown as Decoded
}

export function rcode(b: Buffer): number {
  return b[3] & 0xf
}

/** A Resolver fake that answers with a function of the query and records what it was asked. */
export class FakeResolver {
  asked: string[] = []
  constructor(
    readonly server: string,
    public answer: (raw: Buffer) => Buffer = (raw) => makeAnswer(raw, { answers: [a(dnsPacket.decode(raw).questions![0].name, '10.9.9.9', 60)] }),
    public ok = true,
  ) {}
  async resolve(query: Buffer) {
    this.asked.push(dnsPacket.decode(query).questions![0].name)
    return { answer: this.answer(query), server: this.server, ok: this.ok }
  }
  close(): void {}
}
