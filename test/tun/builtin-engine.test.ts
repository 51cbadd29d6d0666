import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { memoryLogger } from '../../src/observe/logger'
import { ConnTracker } from '../../src/router/conn-tracker'
import { RouteTable } from '../../src/router/route-table'
import { DialError } from '../../src/router/dial-error'
import type { ConnMeta, Destination, Dialer } from '../../src/router/types'
import { ACK, PSH, RST, SYN } from '../../src/netstack/tcp-wire'
import { type PacketDevice, refusalFor, startBuiltinEngine } from '../../src/tun/builtin-engine'
import { App, FakeChannel, FakeClock, type Out, parseOut, tick } from '../netstack/helpers'

class FakeDevice implements PacketDevice {
  readonly name = 'st0'
  readonly mtu = 1500
  sent: Out[] = []
  closed = false
  private cb: (p: Buffer) => void = () => {}
  onPacket(cb: (p: Buffer) => void): void {
    this.cb = cb
  }
  write(p: Buffer): void {
    this.sent.push(parseOut(p))
  }
  async close(): Promise<void> {
    this.closed = true
  }
  inject(p: Buffer): void {
    this.cb(p)
  }
}

function setup(dial: Dialer['dial']) {
  const device = new FakeDevice()
  const tracker = new ConnTracker()
  const log = memoryLogger('verbose')
  const routes = new RouteTable([
    { cidr: parseCidr('10.0.0.0/8'), action: 'tunnel' },
    { cidr: parseCidr('10.9.0.0/16'), action: 'direct' },
  ])
  const clock = new FakeClock()
  const engine = startBuiltinEngine({ device, dialer: { dial }, routes, tracker, log, stack: { timers: clock } })
  return { device, tracker, log, engine, clock }
}

describe('builtin engine', () => {
  it('dials routed destinations, tracks the connection and counts its bytes', async () => {
    const dialed: [Destination, ConnMeta][] = []
    const ch = new FakeChannel()
    const e = setup(async (dst, meta) => {
      dialed.push([dst, meta])
      return ch
    })
    const app = new App(4, 40000, '10.1.2.3', 5432)
    e.device.inject(app.seg(1, 0, SYN, 65535))
    await tick()
    // The route decision travels with the dial (the dialer does not look it up again).
    expect(dialed).toEqual([[{ host: '10.1.2.3', port: 5432 }, { id: 1, frontEnd: 'transparent', srcAddress: '10.0.0.2', srcPort: 40000, route: { cidr: parseCidr('10.0.0.0/8'), action: 'tunnel' } }]])
    const iss = e.device.sent[0].tcp!.seq
    e.device.inject(app.seg(2, iss + 1, ACK | PSH, 65535, 'select 1'))
    ch.push('row')
    await tick()
    e.clock.advance(0) // the end of the input burst: data to the channel, then the ACK
    expect(ch.text()).toBe('select 1')
    expect(e.tracker.active()[0]).toMatchObject({ bytesUp: 8, bytesDown: 3 })
    await e.engine.stop()
    await tick()
    expect(e.device.closed).toBe(true)
    expect(e.tracker.totals).toMatchObject({ active: 0, total: 1, failed: 1 })
  })

  it('resets excluded destinations without dialling, and logs it', async () => {
    let dials = 0
    const e = setup(async () => {
      dials++
      return new FakeChannel()
    })
    e.device.inject(new App(4, 40000, '10.9.1.1', 80).seg(1, 0, SYN, 65535))
    await tick()
    expect(dials).toBe(0)
    expect(e.device.sent[0].tcp!.flags).toBe(RST | ACK)
    expect(e.engine.stats()).toMatchObject({ unrouted: 1, resets: 1 })
    expect(e.log.lines.join('\n')).toMatch(/10\.9\.1\.1:80 is not in the tunnelled subnets/)
  })

  it('maps a refused channel to RST and records the failure', async () => {
    const e = setup(async () => {
      throw new DialError('refused', 'ssh: open 10.1.2.3:81: connection refused')
    })
    e.device.inject(new App(4, 40000, '10.1.2.3', 81).seg(1, 0, SYN, 65535))
    await tick()
    expect(e.device.sent[0].tcp!.flags).toBe(RST | ACK)
    expect(e.tracker.totals).toMatchObject({ total: 1, failed: 1, active: 0 })
  })

  it.each([
    ['unreachable', 'host-unreachable'],
    ['network-unreachable', 'host-unreachable'],
    ['timeout', 'host-unreachable'],
    ['refused', 'reset'],
    ['prohibited', 'reset'],
    ['not-routed', 'reset'],
    ['not-connected', 'reset'],
  ] as const)('a dial that failed as %s is answered with %s', (reason, answer) => {
    expect(refusalFor(new DialError(reason, 'x')).answer).toBe(answer)
  })
})
