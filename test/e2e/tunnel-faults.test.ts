// Faults, end to end with the real CLI: the bastion's sshd dies and comes back, the link to the
// bastion goes down and up, the privileged helper or the main process is SIGKILLed, file
// descriptors run out. What must hold: loss is noticed within the keepalive bound, open
// connections are reset (never left hanging), the tunnel comes back by itself with backoff, the
// kernel rules never flap, and nothing is left behind. Channel-level refusals are in
// tunnel-faults-refusals.test.ts. Behaviour only: time bounds are generous upper bounds.
import { readFileSync } from 'node:fs'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel, waitGone } from './lib/cli'
import { describeRun, sleep } from './lib/exec'
import { HoldClient, firewallSnapshot, killSshd, logLines, sampleFirewall, setBastionLink, startSshd, streamingDownload, waitForLog } from './lib/faults'
import { leftoverRules, waitForNoRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl, firstSuccess } from './lib/traffic'

const HELLO = 'hello from the private network'
/** -o ServerAliveInterval=1 -o ServerAliveCountMax=2: a dead path is noticed after ~3 s. */
const KEEPALIVE = ['-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=2']
/** Keepalive bound (1 s × (2 + 1)) plus slack for a loaded 2-core machine. */
const LOSS_BOUND_MS = 10_000
const LOST = /connection lost/
const RECONNECTING = /reconnecting to \S+ in ([\d.]+) s \(attempt (\d+)[;)]/

e2eDescribe('faults (real CLI, real sshd, real kernel)', () => {
  let tb: Testbed
  const holds: HoldClient[] = []

  useTestbed('tf', (t) => (tb = t), {
    cleanup: true,
    tearDown: async (tb) => {
      await Promise.all(holds.map((h) => h.stop()))
      if (tb) await setBastionLink(tb, true).catch(() => undefined)
    },
  })

  const hold = (n: number, opts?: { settleMs?: number; holdMs?: number }, host = tb.env.privateIp): HoldClient => {
    const h = HoldClient.start(tb, host, tb.env.echoPort, n, opts)
    holds.push(h)
    return h
  }
  const dig = (name: string) =>
    tb.exec('client', ['dig', '+time=2', '+tries=1', '+short', `@${tb.env.unreachableNs}`, name], { timeoutMs: 10_000 })
  /** A tunnel with short keepalives and DNS captured for the (otherwise unreachable) unreachableNs. */
  const start = (extra: readonly string[] = []): Promise<Tunnel> =>
    Tunnel.start(tb, [...remoteArgs(tb), ...KEEPALIVE, ...extra, '--ns-hosts', tb.env.unreachableNs, tb.env.privateNet])

  /** Everything works: HTTP, an echo connection, DNS through the tunnel. */
  async function expectWorking(): Promise<void> {
    const r = await curl(tb, tb.url(tb.env.privateIp))
    expect(r.stdout, describeRun(r)).toContain(HELLO)
    const d = await dig(tb.env.dnsName)
    expect(d.stdout.trim(), describeRun(d)).toBe(tb.env.privateIp)
  }

  /**
   * The common outage scenario: one connection held open through the tunnel, rules snapshotted
   * and sampled throughout; `fault` breaks the path, `heal` repairs it. Returns the tunnel's stderr.
   */
  async function outage(
    fault: () => Promise<void>,
    heal: () => Promise<void>,
    whileDown: (t: Tunnel) => Promise<void>,
    extra: readonly string[] = [],
  ): Promise<{ stderr: string; faultAt: number; lost: number; closed: number }> {
    const t = await start(extra)
    const h = hold(1)
    try {
      await expectWorking()
      const rules = await firewallSnapshot(tb)
      expect(rules).toMatch(/subnet-tunnel/)
      expect((await h.settled).echoed, 'the held connection echoes').toBe(1)
      const sampler = sampleFirewall(tb)
      const faultAt = Date.now()
      await fault()
      // The held connection is reset (RST, not a silent hang and not a clean EOF).
      const [closed] = await h.waitClosed(1, 30_000)
      expect(closed, `held connection still open 30 s after the fault; stderr:\n${t.stderr}`).toBeDefined()
      expect(closed!.how, JSON.stringify(closed)).toBe('reset')
      const lost = await waitForLog(() => t.stderr, LOST, 1_000)
      expect(lost, t.stderr).toBeDefined()
      await whileDown(t)
      await heal()
      // Back without user action: new connections and DNS.
      await firstSuccess(tb, tb.url(tb.env.privateIp), 60_000)
      await expectWorking()
      expect(await waitForLog(() => t.stderr, /re-established/, 5_000), t.stderr).toBeDefined()
      // One line per event: the loss and the return are each logged once.
      expect(t.stderr.split('\n').filter((l) => LOST.test(l)), t.stderr).toHaveLength(1)
      expect(t.stderr.split('\n').filter((l) => /re-established|reconnected to/.test(l)), t.stderr).toHaveLength(1)
      // The rules never flapped: one distinct ruleset before, during and after the outage.
      const { samples, distinct } = await sampler.stop()
      expect(samples).toBeGreaterThan(3)
      expect(distinct, 'the ruleset changed during the outage').toEqual([rules])
      expect(await firewallSnapshot(tb)).toBe(rules)
      expect(t.hasExited).toBe(false)
      return { stderr: t.stderr, faultAt, lost: lost!.at, closed: closed!.t }
    } finally {
      await h.stop()
      expect((await t.stop()).code, t.stderr).toBe(0)
      expect(await leftoverRules(tb)).toEqual([])
    }
  }

  it('client–bastion link down and up: keepalive notices, held connection reset, back by itself, rules steady', async () => {
    const r = await outage(
      () => setBastionLink(tb, false),
      () => setBastionLink(tb, true),
      async (t) => {
        // Stay down long enough for at least one reconnect attempt to be scheduled.
        expect(await waitForLog(() => t.stderr, RECONNECTING, 10_000), t.stderr).toBeDefined()
        await sleep(2_000)
      },
      // The client's c0 loses carrier with its peer: the network watcher would redial at once
      // (tunnel-netchange.test.ts). Keepalive is the subject here.
      ['--no-net-watch'],
    )
    // Nothing on the wire says the path died: only the keepalive can notice, within its bound.
    const lostLine = logLines(r.stderr, LOST)[0]!
    console.log(`[measure] link down → loss logged after ${r.lost - r.faultAt} ms, held connection reset after ${r.closed - r.faultAt} ms`)
    expect(lostLine.text).toMatch(/keepalive/i)
    expect(r.lost - r.faultAt, lostLine.text).toBeLessThan(LOSS_BOUND_MS)
    expect(r.closed - r.faultAt).toBeLessThan(LOSS_BOUND_MS + 2_000)
  })

  it('sshd killed and restarted: held connection reset at once, reconnects with exponential backoff, DNS back', async () => {
    const r = await outage(
      async () => void (await killSshd(tb)),
      () => startSshd(tb),
      async (t) => {
        // Refused at once each time: the delays between attempts are the backoff alone.
        expect(await waitForLog(() => t.stderr, /\(attempt 3[;)]/, 20_000), t.stderr).toBeDefined()
      },
    )
    expect(r.closed - r.faultAt).toBeLessThan(LOSS_BOUND_MS)
    const attempts = logLines(r.stderr, RECONNECTING).map((l) => {
      const m = RECONNECTING.exec(l.text)!
      return { at: l.at, delayS: Number(m[1]), n: Number(m[2]) }
    })
    expect(attempts.length, r.stderr).toBeGreaterThanOrEqual(3)
    console.log(`[measure] sshd killed → held connection reset after ${r.closed - r.faultAt} ms; reconnect delays ${attempts.map((a) => a.delayS).join(', ')} s`)
    attempts.forEach((a, i) => {
      expect(a.n).toBe(i + 1)
      // 0.5 s doubling per attempt, ±20 % jitter (the log rounds to 0.1 s), capped at 30 s.
      const base = Math.min(30, 0.5 * 2 ** i)
      expect(a.delayS, `attempt ${a.n}`).toBeGreaterThanOrEqual(base * 0.8 - 0.05)
      expect(a.delayS, `attempt ${a.n}`).toBeLessThanOrEqual(Math.min(30, base * 1.2) + 0.05)
      // The next attempt is not announced before this one's delay has passed.
      if (i > 0) expect(a.at - attempts[i - 1]!.at).toBeGreaterThanOrEqual(attempts[i - 1]!.delayS * 1000 - 100)
    })
  })

  it('privileged helper SIGKILLed: the CLI says so, exits non-zero, `cleanup` removes the rest', async () => {
    const t = await start()
    const helpers = t.descendants().filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('helper-main.js')
      } catch {
        return false
      }
    })
    expect(helpers, 'one helper process').toHaveLength(1)
    const h = hold(1)
    expect((await h.settled).echoed).toBe(1)
    process.kill(helpers[0]!, 'SIGKILL')
    const exit = await Promise.race([t.exited, sleep(20_000).then(() => null)])
    expect(exit, `still running 20 s after its helper died:\n${t.stderr}`).not.toBeNull()
    expect(exit!.code, t.stderr).not.toBe(0)
    expect(exit!.code, t.stderr).not.toBeNull()
    expect(t.stderr).toMatch(/helper exited unexpectedly/)
    expect(t.stderr, 'tells the user how to remove what is left').toMatch(/subnet-tunnel cleanup/)
    expect(t.stderr, 'no stack trace').not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
    // It removed what it could: its connections, its processes.
    expect((await h.waitClosed(1, 5_000)).length).toBe(1)
    expect(await waitGone([t.pid, ...helpers], 5_000)).toEqual([])
    const c = await runCli(tb, ['cleanup'])
    expect(c.code, describeRun(c)).toBe(0)
    expect(await leftoverRules(tb)).toEqual([])
    await h.stop()
    expect(await tb.waitForNoPids('client', 5_000)).toEqual([])
  })

  it('main process SIGKILLed with connections and a download in flight: no rule left', async () => {
    const t = await start()
    const helpers = t.descendants()
    const h = hold(100)
    const settled = await h.settled
    expect(settled.echoed, JSON.stringify(settled)).toBe(100)
    // 64 MiB at 20 MiB/s: still flowing when the process dies.
    const dl = streamingDownload(tb, tb.url(tb.env.privateIp, tb.env.bigFile))
    await dl.firstBytes
    expect(await leftoverRules(tb)).not.toEqual([])
    process.kill(t.pid, 'SIGKILL')
    // The helper sees EOF on its stdin and reverts.
    expect(await waitForNoRules(tb, 5_000)).toEqual([])
    expect(await waitGone(helpers, 5_000)).toEqual([])
    // The held connections died with the process (the kernel closed them), none hangs.
    expect((await h.waitClosed(100, 10_000)).length).toBe(100)
    const ended = await dl.ended
    expect(ended.bytes).toBeGreaterThan(0)
    expect(ended.bytes, 'the download was cut, not completed').toBeLessThan(tb.env.bigFileBytes)
    expect(ended.code).not.toBe(0)
    await h.stop()
  })

  it('file descriptors run out (prlimit --nofile=64): extra connections closed, the process survives and recovers', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet], { wrap: ['prlimit', '--nofile=64:64'] })
    try {
      const limit = readFileSync(`/proc/${t.pid}/limits`, 'utf8')
      expect(limit).toMatch(/Max open files\s+64\s+64/)
      const n = 150
      const h = hold(n, { settleMs: 60_000 })
      const s = await h.settled
      console.log(`[measure] ${n} connections under --nofile=64: ${JSON.stringify(s)}`)
      // Some fit, the rest are closed by the listener: none left hanging, none refused by the kernel.
      expect(s.echoed, JSON.stringify(s)).toBeGreaterThan(5)
      expect(s.echoed, JSON.stringify(s)).toBeLessThan(n)
      expect(s.timeout, JSON.stringify(s)).toBe(0)
      expect(s.echoed + s.reset + s.eof, JSON.stringify(s)).toBe(n)
      expect(t.hasExited, t.stderr).toBe(false)
      // Load drops: everything works again.
      await h.stop()
      await firstSuccess(tb, tb.url(tb.env.privateIp), 20_000)
      const again = hold(20)
      expect((await again.settled).echoed, t.stderr).toBe(20)
      await again.stop()
      // The user is told why (the kernel drops the extra accepts silently), but not once per
      // connection: the warning is rate-limited.
      const lines = t.stderr.split('\n').filter((l) => /near the open-files limit/.test(l))
      console.log(`[measure] open-files warnings on stderr:\n${lines.join('\n')}`)
      expect(lines.length, t.stderr).toBeGreaterThanOrEqual(1)
      expect(lines.length, t.stderr).toBeLessThanOrEqual(10)
      expect(t.hasExited, t.stderr).toBe(false)
    } finally {
      expect((await t.stop()).code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})
