import { describe, expect, it } from 'vitest'
import { buildUdp, parseUdp } from '../../src/netstack/udp-icmp'
import { parseAddress } from '../../src/netstack/ip'
import { FlowRefused } from '../../src/netstack/refusal'
import { ACK, RST, SYN } from '../../src/netstack/tcp-wire'
import { App, makeStack, tick } from './helpers'

const reject = (e: Error) => () => Promise.reject(e)

describe('NetStack refusals', () => {
  it.each([
    ['a reset refusal', new FlowRefused('reset')],
    ['any other error', new Error('open failed')],
  ])('answers a failed open (%s) with RST', async (_what, err) => {
    const s = makeStack({ openTcp: reject(err) })
    s.stack.input(new App().seg(5000, 0, SYN, 64240))
    await tick()
    const [p] = s.take()
    expect(p.tcp).toMatchObject({ flags: RST | ACK, seq: 0, ack: 5001 })
    expect(s.stack.stats()).toMatchObject({ tcpActive: 0, tcpTotal: 1, resets: 1 })
  })

  it.each([
    [4, 3, 1],
    [6, 1, 3],
  ] as const)('answers IPv%s host-unreachable refusals with ICMP host unreachable', async (family, type, code) => {
    const s = makeStack({ openTcp: reject(new FlowRefused('host-unreachable')) })
    const syn = new App(family).seg(5000, 0, SYN, 64240)
    s.stack.input(syn)
    await tick()
    const [p] = s.take()
    expect(p.ip.proto).toBe(family === 4 ? 1 : 58)
    const o = p.ip.l4Off
    expect([p.ip.buf[o], p.ip.buf[o + 1]]).toEqual([type, code])
    expect(p.ip.buf.subarray(o + 8, o + 8 + syn.length)).toEqual(syn) // the SYN, quoted
    expect(s.stack.stats().tcpActive).toBe(0)
  })

  it('resets segments of unknown flows, and never answers an RST', () => {
    const s = makeStack()
    const app = new App()
    s.stack.input(app.seg(7, 12345, ACK, 100, 'stale'))
    s.stack.input(app.seg(7, 0, RST, 0))
    const out = s.take()
    expect(out).toHaveLength(1)
    expect(out[0].tcp).toMatchObject({ flags: RST, seq: 12345 })
  })

  it('counts and drops malformed and unsupported packets without throwing', () => {
    const s = makeStack()
    const good = new App().seg(7, 0, SYN, 100)
    const corrupt = Buffer.from(good)
    corrupt[corrupt.length - 1] ^= 0x55 // TCP checksum
    const icmpEcho = Buffer.from(good)
    icmpEcho[9] = 1
    icmpEcho.writeUInt16BE(0, 10)
    for (const p of [Buffer.alloc(0), Buffer.from([0x45]), Buffer.alloc(60, 0x45), corrupt, good.subarray(0, 30), Buffer.alloc(3000, 0x60)]) s.stack.input(p)
    expect(s.out).toEqual([])
    expect(s.stack.stats().dropped).toBe(6)
  })
})

describe('NetStack UDP', () => {
  const query = (family: 4 | 6, dport = 53) =>
    buildUdp(family, parseAddress(family === 4 ? '10.0.0.2' : 'fd00::2'), parseAddress(family === 4 ? '10.1.2.3' : 'fd00:1::3'), 5353, dport, Buffer.from('question'))

  it('hands datagrams to the handler and sends its reply back', async () => {
    const seen: string[] = []
    const s = makeStack({
      udp: async (src, dst, payload) => {
        seen.push(`${src.host}:${src.port} → ${dst.host}:${dst.port} ${payload.toString()}`)
        return Buffer.from('answer')
      },
    })
    s.stack.input(query(6))
    await tick()
    expect(seen).toEqual(['fd00::2:5353 → fd00:1::3:53 question'])
    const [p] = s.take()
    expect(parseUdp(p.ip)).toMatchObject({ srcPort: 53, dstPort: 5353 })
    expect(parseUdp(p.ip)!.payload.toString()).toBe('answer')
    expect(s.stack.stats().udp).toBe(1)
  })

  it('answers ICMP port unreachable without a handler or when it says unsupported', async () => {
    for (const udp of [undefined, () => Promise.reject(new FlowRefused('port-unreachable'))]) {
      const s = makeStack({ udp })
      s.stack.input(query(4, 9999))
      await tick()
      const [p] = s.take()
      expect([p.ip.proto, p.ip.buf[20], p.ip.buf[21]]).toEqual([1, 3, 3])
    }
  })

  it('drops silently when the handler fails otherwise', async () => {
    const s = makeStack({ udp: () => Promise.reject(new Error('boom')) })
    s.stack.input(query(4))
    await tick()
    expect(s.out).toEqual([])
    expect(s.stack.stats().dropped).toBe(1)
  })
})
