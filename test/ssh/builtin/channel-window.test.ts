import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import { PassThrough as PassThroughBase, type Duplex } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/observe/logger'
import type { ConnMeta } from '../../../src/router/types'
import { SSH2_DEFAULT_WINDOW } from '../../../src/ssh/builtin/channel-window'
import { SshSession } from '../../../src/ssh/builtin/session'
import { SshDialer, type SshDialerOptions } from '../../../src/ssh/builtin/dialer'
import { fakeVerifier, genKey, hostCfg, scriptedPrompter, tmpDir, TestServer, writeKey, type KeyPair } from '../helpers'
import { delayRelay, payload, sourceServer } from './window-fixtures'

const MiB = 1024 * 1024
const meta: ConnMeta = { id: 1, frontEnd: 'transparent', srcAddress: '127.0.0.1', srcPort: 40000 }
const DATA = payload(24 * MiB)
const DIGEST = crypto.createHash('sha256').update(DATA).digest('hex')

interface Internals {
  incoming: { window: number }
  outgoing: { id: number }
}
const inner = (ch: Duplex): Internals => ch as unknown as Internals

/** Every CHANNEL_WINDOW_ADJUST the client sends (ssh2's own and ours), by remote channel id. */
function recordAdjusts(session: SshSession): Map<number, number> {
  const proto = (session.client as unknown as { _protocol: { channelWindowAdjust(id: number, n: number): void } })._protocol
  const sums = new Map<number, number>()
  const orig = proto.channelWindowAdjust.bind(proto)
  proto.channelWindowAdjust = (id, n) => {
    expect(n).toBeGreaterThan(0)
    sums.set(id, (sums.get(id) ?? 0) + n)
    orig(id, n)
  }
  return sums
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('adaptive channel windows (in-process ssh2 server behind a 2 × 30 ms delay relay)', () => {
  let hostKey: KeyPair
  let userKey: KeyPair
  let dir: string
  let keyFile: string
  let srv: TestServer
  let relay: Awaited<ReturnType<typeof delayRelay>>
  let source: Awaited<ReturnType<typeof sourceServer>>
  const sessions: SshSession[] = []

  beforeAll(async () => {
    hostKey = genKey()
    userKey = genKey()
    dir = tmpDir()
    keyFile = writeKey(dir, 'id', userKey)
    srv = new TestServer({ hostKey, userKey })
    await srv.start()
    relay = await delayRelay(srv.port, 30)
    source = await sourceServer(DATA)
  })
  afterAll(async () => {
    for (const s of sessions) await s.close()
    await relay.close()
    await srv.stop()
    await source.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  async function setup(opts: SshDialerOptions = {}) {
    const session = new SshSession({
      target: hostCfg({ port: relay.port, identityFiles: [keyFile] }),
      makeVerifier: () => fakeVerifier(hostKey.blob),
      prompter: scriptedPrompter(null),
      log: silentLogger,
    })
    sessions.push(session)
    await session.start()
    const adjusts = recordAdjusts(session)
    return { session, adjusts, dialer: new SshDialer(session, opts) }
  }

  /** Reads ch to the end, checking exact accounting on every chunk; resolves with the sha256. */
  function drain(ch: Duplex, adjusts: Map<number, number>, received: () => number): Promise<string> {
    const h = crypto.createHash('sha256')
    const id = inner(ch).outgoing.id
    return new Promise((resolve, reject) => {
      ch.on('data', (d: Buffer) => {
        h.update(d)
        // Credit is conserved: initial window + every grant = bytes received + window left.
        const granted = SSH2_DEFAULT_WINDOW + (adjusts.get(id) ?? 0)
        if (granted !== received() + inner(ch).incoming.window) reject(new Error(`accounting: granted ${granted}, received ${received()}, window ${inner(ch).incoming.window}`))
      })
      ch.on('end', () => resolve(h.digest('hex')))
      ch.on('error', reject)
    })
  }

  it('grows the window of a fast consumer, keeps the accounting exact and the data intact', async () => {
    const { dialer, adjusts } = await setup()
    const ch = await dialer.dial({ host: '127.0.0.1', port: source.port }, meta)
    const w = dialer.windows!.windowOf(ch)!
    expect(w.target).toBe(SSH2_DEFAULT_WINDOW)
    const closed = new Promise((r) => ch.once('close', r))
    const digest = await drain(ch, adjusts, () => w.received)
    expect(digest).toBe(DIGEST)
    expect(w.received).toBe(DATA.length)
    expect(w.target).toBeGreaterThan(SSH2_DEFAULT_WINDOW)
    expect(w.target).toBeLessThanOrEqual(16 * MiB)
    expect(dialer.windows!.stats.growths).toBeGreaterThan(0)
    // The source ended, so the server closes the channel after our EOF.
    ch.end()
    await closed
    // The budget is given back when the channel closes.
    expect(dialer.windows!.stats.extraReserved).toBe(0)
    expect(dialer.windows!.stats.channels).toBe(0)
  })

  it('with windows: false the channel keeps ssh2 stock behaviour (never above 2 MiB of credit)', async () => {
    const { dialer, adjusts } = await setup({ windows: false })
    const ch = await dialer.dial({ host: '127.0.0.1', port: source.port }, meta)
    let got = 0
    let maxCredit = 0
    ch.on('data', (d: Buffer) => {
      got += d.length
      maxCredit = Math.max(maxCredit, inner(ch).incoming.window)
    })
    await new Promise((r) => ch.once('end', r))
    expect(got).toBe(DATA.length)
    expect(maxCredit).toBeLessThanOrEqual(SSH2_DEFAULT_WINDOW)
    expect(SSH2_DEFAULT_WINDOW + (adjusts.get(inner(ch).outgoing.id) ?? 0)).toBe(got + inner(ch).incoming.window)
    ch.destroy()
  })

  it('a consumer that stops reading stops the growth and bounds the buffered data', async () => {
    const { dialer, adjusts } = await setup()
    const ch = await dialer.dial({ host: '127.0.0.1', port: source.port }, meta)
    const w = dialer.windows!.windowOf(ch)!
    // Read fast until the window has grown once, then stop reading.
    await new Promise<void>((resolve) => {
      const onData = (): void => {
        if (w.target > SSH2_DEFAULT_WINDOW) {
          ch.off('data', onData)
          ch.pause()
          resolve()
        }
      }
      ch.on('data', onData)
    })
    const targetAtStop = w.target
    await sleep(600) // ten round trips: plenty for the peer to use every byte of credit
    const r1 = w.received
    await sleep(300)
    expect(w.received).toBe(r1) // the sender is stalled: no grant while nothing is read
    expect(w.received).toBeLessThan(DATA.length)
    expect(w.target).toBe(targetAtStop)
    // Unread data never exceeds what was granted beyond what the consumer took.
    const cap = Math.max(targetAtStop, 2 * SSH2_DEFAULT_WINDOW)
    expect(ch.readableLength).toBeGreaterThan(0)
    expect(ch.readableLength + inner(ch).incoming.window).toBeLessThanOrEqual(cap)
    // Reading again resumes the transfer (no deadlock) with every byte intact.
    const head = DATA.subarray(0, w.received - ch.readableLength)
    const rest = drain(ch, adjusts, () => w.received)
    const restHash = crypto.createHash('sha256')
    ch.on('data', (d: Buffer) => restHash.update(d))
    ch.resume()
    await rest
    expect(w.received).toBe(DATA.length)
    expect(restHash.digest('hex')).toBe(crypto.createHash('sha256').update(DATA.subarray(head.length)).digest('hex'))
    ch.destroy()
  })

  it('the shared budget caps the sum of grown windows across channels', async () => {
    const { dialer, adjusts } = await setup({ windows: { maxWindow: 16 * MiB, maxExtraTotal: 3 * MiB } })
    const chans = await Promise.all([0, 1, 2].map(() => dialer.dial({ host: '127.0.0.1', port: source.port }, meta)))
    const ws = chans.map((c) => dialer.windows!.windowOf(c)!)
    let maxExtra = 0
    const ended = [false, false, false]
    const digests = await Promise.all(
      chans.map((c, i) => {
        c.on('data', () => {
          // Only live channels hold budget: a finished one gives its share back on close.
          const live = ws.filter((_, j) => !ended[j]).reduce((a, w) => a + w.target - SSH2_DEFAULT_WINDOW, 0)
          expect(dialer.windows!.stats.extraReserved).toBe(live)
          maxExtra = Math.max(maxExtra, live)
        })
        c.once('close', () => (ended[i] = true))
        return drain(c, adjusts, () => ws[i]!.received)
      }),
    )
    expect(digests).toEqual([DIGEST, DIGEST, DIGEST])
    expect(maxExtra).toBeGreaterThan(0)
    expect(maxExtra).toBeLessThanOrEqual(3 * MiB)
    expect(dialer.windows!.stats.extraReserved).toBeLessThanOrEqual(3 * MiB)
    for (const c of chans) c.destroy()
  })
})

describe('ChannelWindowManager near RTT 0', () => {
  it('leaves channels alone when the round trip is under MIN_RTT_MS (the stock window is never the limit there)', async () => {
    const { ChannelWindowManager } = await import('../../../src/ssh/builtin/channel-window')
    const { MIN_RTT_MS } = await import('../../../src/ssh/window-policy')
    const { PassThrough } = await import('node:stream')
    const m = new ChannelWindowManager()
    expect(m.manage(new PassThrough())).toBe(false) // no RTT known yet
    m.noteRtt(MIN_RTT_MS - 4)
    expect(m.manage(new PassThrough())).toBe(false)
    expect(m.stats.channels).toBe(0)
  })
})

describe('nextTarget (the window rule)', () => {
  it('grows by a quarter plus 2 MiB per round trip while the window is the limit, at most doubling', async () => {
    const { nextTarget, WINDOW_HEADROOM } = await import('../../../src/ssh/window-policy')
    // Window-limited: the whole target moved in one round trip.
    expect(nextTarget(8 * MiB, 8 * MiB, 40, 40, 64 * MiB)).toBe(10 * MiB + WINDOW_HEADROOM)
    expect(nextTarget(4 * MiB, 4 * MiB, 40, 40, 64 * MiB)).toBe(5 * MiB + WINDOW_HEADROOM)
    // Never more than double, never above the cap, never below ssh2's window.
    expect(nextTarget(2 * MiB, 20 * MiB, 40, 40, 64 * MiB)).toBe(4 * MiB)
    expect(nextTarget(12 * MiB, 12 * MiB, 40, 40, 16 * MiB)).toBe(16 * MiB)
    expect(nextTarget(2 * MiB, 0, 40, 40, 16 * MiB)).toBe(SSH2_DEFAULT_WINDOW)
    // An epoch longer than the round trip is scaled to one round trip.
    expect(nextTarget(8 * MiB, 16 * MiB, 80, 40, 64 * MiB)).toBe(10 * MiB + WINDOW_HEADROOM)
  })

  it('settles near 1.25 × the bytes per round trip when the sender, not the window, is the limit', async () => {
    const { nextTarget } = await import('../../../src/ssh/window-policy')
    // A sender that moves 4 MiB per round trip whatever credit it has (sshd short of CPU): the
    // old "double while half the window moves" rule went 2 → 4 → 8 → 16 MiB here, and the
    // surplus queued up inside sshd.
    let t = 2 * MiB
    for (let i = 0; i < 40; i++) t = nextTarget(t, 4 * MiB, 40, 40, 16 * MiB)
    expect(t).toBe(7 * MiB)
    // It comes down, an eighth per round trip, when the rate falls.
    const before = t
    t = nextTarget(t, MiB, 40, 40, 16 * MiB)
    expect(t).toBe(before - before / 8)
    for (let i = 0; i < 40; i++) t = nextTarget(t, MiB, 40, 40, 16 * MiB)
    expect(t).toBe(Math.ceil(1.25 * MiB) + 2 * MiB)
  })
})

describe('ChannelWindowManager with a scripted peer and clock', () => {
  /** Just the ssh2 channel internals the manager uses; the "peer" is driven by the test. */
  class FakeChannel extends PassThroughBase {
    incoming = { window: SSH2_DEFAULT_WINDOW }
    outgoing = { id: 7, state: 'open' }
    adjusts: number[] = []
    _client = { _protocol: { channelWindowAdjust: (_id: number, n: number) => void this.adjusts.push(n) } }
    /** The peer sends n bytes (never more than its credit), in 32 KiB packets, as ssh2 pushes them. */
    send(n: number): number {
      let sent = 0
      while (sent < n && this.incoming.window > 0) {
        const len = Math.min(32 * 1024, n - sent, this.incoming.window)
        this.incoming.window -= len
        this.push(Buffer.alloc(len))
        sent += len
      }
      return sent
    }
  }

  it('measures the grant → data delay, keeps credit exact, and stops growing at a sender-limited rate', async () => {
    const { ChannelWindowManager } = await import('../../../src/ssh/builtin/channel-window')
    let clock = 0
    const m = new ChannelWindowManager({ now: () => clock, maxWindow: 64 * MiB, maxExtraTotal: 256 * MiB })
    m.noteRtt(60) // the open took longer than the real 40 ms round trip
    const ch = new FakeChannel()
    expect(m.manage(ch)).toBe(true)
    let consumed = 0
    ch.on('data', (d: Buffer) => (consumed += d.length))
    const w = m.windowOf(ch)!
    const credit = (): number => SSH2_DEFAULT_WINDOW + ch.adjusts.reduce((a, b) => a + b, 0)
    // Window-limited phase: each round trip the peer uses all its credit.
    for (let i = 0; i < 6; i++) {
      clock += 40
      ch.send(ch.incoming.window)
      expect(credit()).toBe(w.received + ch.incoming.window)
    }
    expect(consumed).toBe(w.received)
    expect(m.stats.rttMs).toBe(60)
    const grown = w.target
    expect(grown).toBeGreaterThan(6 * MiB)
    // Grants are answered one (scripted) round trip later: that is the delay it measured.
    expect(w.rtt).toBe(40)
    // Sender-limited phase: 3 MiB per round trip, however much credit it has.
    for (let i = 0; i < 60; i++) {
      clock += 40
      ch.send(3 * MiB)
      expect(credit()).toBe(w.received + ch.incoming.window)
    }
    // The target came down to ~1.25 × 3 MiB + 2 MiB instead of staying high or doubling.
    expect(w.target).toBeLessThan(6 * MiB)
    expect(w.target).toBeGreaterThanOrEqual(5 * MiB)
    ch.destroy()
  })
})
