/**
 * --route-by-name in the main process: what a (hostile) DNS answer may make us route, for how
 * long, and that the DNS answer is held until the kernel has the address.
 */
import * as dnsPacket from 'dns-packet'
import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { answerAddresses, MAX_ADDRESSES_PER_ANSWER } from '../../src/dns/answer-addresses'
import { DnsService } from '../../src/dns/dns-service'
import { SplitDnsPolicy } from '../../src/dns/policy'
import { memoryLogger } from '../../src/observe/logger'
import { LearningRouteTable } from '../../src/router/learning-route-table'
import { LearntRoutes, MIN_LEARN_TTL_S } from '../../src/router/learnt-routes'
import { a, FakeResolver, makeAnswer, makeQuery } from '../dns/helpers'

function learner(opts: { screen?: (a: string) => string | undefined; inUse?: (a: string) => boolean; grace?: number; kernel?: (e: { address: string; ttl: number }[]) => Promise<unknown> } = {}) {
  let now = 1_000_000
  const calls: { address: string; ttl: number }[][] = []
  const log = memoryLogger('verbose')
  const l = new LearntRoutes({ screen: opts.screen ?? (() => undefined), inUse: opts.inUse ?? (() => false), graceS: opts.grace ?? 5, log, now: () => now, sweepMs: 3_600_000 })
  l.attach(async (e) => {
    calls.push(e)
    return opts.kernel?.(e)
  })
  return { l, calls, log, advance: (ms: number) => (now += ms), now: () => now }
}

describe('answerAddresses', () => {
  it('takes A and AAAA of the answer section with their TTLs, nothing else', () => {
    const q = makeQuery('db.corp.internal')
    const ans = makeAnswer(q, {
      answers: [
        { type: 'CNAME', name: 'db.corp.internal', ttl: 50, class: 'IN', data: 'db1.corp.internal' },
        a('db1.corp.internal', '10.1.2.3', 30),
        { type: 'AAAA', name: 'db1.corp.internal', ttl: 40, class: 'IN', data: 'fd00::3' },
      ],
    })
    expect(answerAddresses(ans)).toEqual([{ address: '10.1.2.3', ttl: 30 }, { address: 'fd00::3', ttl: 40 }])
  })

  it('nothing from errors, queries, garbage; at most MAX_ADDRESSES_PER_ANSWER', () => {
    const q = makeQuery('x.corp.internal')
    expect(answerAddresses(makeAnswer(q, { rcode: 'NXDOMAIN', answers: [a('x.corp.internal', '10.0.0.1')] }))).toEqual([])
    expect(answerAddresses(q)).toEqual([])
    expect(answerAddresses(Buffer.from('garbage that is not dns'))).toEqual([])
    const many = makeAnswer(q, { answers: Array.from({ length: 100 }, (_, i) => a('x.corp.internal', `10.0.${i >> 8}.${(i & 255) + 1}`)) })
    expect(answerAddresses(many).length).toBe(MAX_ADDRESSES_PER_ANSWER)
  })
})

describe('LearntRoutes', () => {
  it('routes a screened address for TTL (at least the floor) + grace, then forgets it', async () => {
    const { l, calls, advance } = learner({ grace: 5 })
    await l.learn('db.corp.internal', [{ address: '10.1.2.3', ttl: 0 }, { address: '10.1.2.4', ttl: 100 }])
    expect(calls).toEqual([[{ address: '10.1.2.3', ttl: MIN_LEARN_TTL_S + 5 }, { address: '10.1.2.4', ttl: 105 }]])
    expect(l.lookup('10.1.2.3')?.names).toEqual(['db.corp.internal'])
    expect(l.lookup('::ffff:10.1.2.3')).toBeDefined()
    advance((MIN_LEARN_TTL_S + 5) * 1000)
    await l.sweep()
    expect(l.lookup('10.1.2.3')).toBeUndefined()
    expect(l.lookup('10.1.2.4')).toBeDefined()
  })

  it('never asks the kernel for special ranges or what the screen refuses (excludes, this machine)', async () => {
    const { l, calls, log } = learner({ screen: (x) => (x === '10.250.0.1' ? 'excluded (10.250.0.1/32)' : undefined) })
    await l.learn('evil.corp.internal', [
      { address: '0.0.0.0', ttl: 60 },
      { address: '127.0.0.1', ttl: 60 },
      { address: '::1', ttl: 60 },
      { address: '169.254.169.254', ttl: 60 },
      { address: '224.0.0.251', ttl: 60 },
      { address: '10.250.0.1', ttl: 60 },
    ])
    expect(calls).toEqual([])
    expect(l.list()).toEqual([])
    expect(log.lines.filter((x) => x.includes('not routing')).length).toBe(6)
  })

  it('a kernel failure leaves the address unrouted (and the answer still goes out)', async () => {
    const { l } = learner({ kernel: async () => Promise.reject(new Error('learn: more than 4096 learnt addresses')) })
    await expect(l.learn('db.corp.internal', [{ address: '10.1.2.3', ttl: 60 }])).resolves.toBeUndefined()
    expect(l.lookup('10.1.2.3')).toBeUndefined()
  })

  it('an address with open connections outlives its time, in the kernel too', async () => {
    let open = true
    const { l, calls, advance } = learner({ grace: 5, inUse: () => open })
    await l.learn('db.corp.internal', [{ address: '10.1.2.3', ttl: 20 }])
    advance(24_000)
    await l.sweep()
    expect(calls[1]).toEqual([{ address: '10.1.2.3', ttl: 5 }])
    advance(10_000)
    expect(l.lookup('10.1.2.3')).toBeDefined()
    open = false
    advance(5_000)
    await l.sweep()
    expect(l.lookup('10.1.2.3')).toBeUndefined()
  })

  it('asks the kernel again only when the new answer gives much more time', async () => {
    const { l, calls, advance } = learner({ grace: 5 })
    await l.learn('a.corp.internal', [{ address: '10.1.2.3', ttl: 100 }])
    advance(10_000)
    await l.learn('b.corp.internal', [{ address: '10.1.2.3', ttl: 100 }])
    expect(calls.length).toBe(1)
    expect(l.lookup('10.1.2.3')?.names).toEqual(['a.corp.internal', 'b.corp.internal'])
    advance(60_000)
    await l.learn('a.corp.internal', [{ address: '10.1.2.3', ttl: 100 }])
    expect(calls.length).toBe(2)
  })

  it('the route table: given entries and excludes decide first, then learnt addresses', async () => {
    const { l } = learner()
    await l.learn('db.corp.internal', [{ address: '10.1.2.3', ttl: 60 }, { address: '10.9.0.5', ttl: 60 }])
    const t = new LearningRouteTable([{ cidr: parseCidr('10.9.0.0/16'), action: 'direct' }], l)
    expect(t.lookup('10.1.2.3')?.action).toBe('tunnel')
    expect(t.lookup('10.9.0.5')?.action).toBe('direct')
    expect(t.lookup('10.1.2.4')).toBeUndefined()
  })
})

describe('DnsService with route-by-name', () => {
  it('hands out the answer only after its addresses are routed (fresh and cached)', async () => {
    const order: string[] = []
    const tunnel = new FakeResolver('10.0.0.2:53', (raw) => makeAnswer(raw, { answers: [a(dnsPacket.decode(raw).questions![0].name, '10.1.2.3', 60)] }))
    const svc = new DnsService({
      tunnel,
      policy: new SplitDnsPolicy(['corp.internal']),
      beforeAnswer: async (name, answer) => {
        await new Promise((r) => setTimeout(r, 20))
        order.push(`learnt ${name} ${answerAddresses(answer).map((x) => x.address).join(',')}`)
      },
    })
    const out = await svc.handle(makeQuery('db.corp.internal'), 'udp', { address: '127.0.0.1', port: 1 })
    order.push('answered')
    expect(out).toBeDefined()
    expect(order).toEqual(['learnt db.corp.internal 10.1.2.3', 'answered'])
  })
})
