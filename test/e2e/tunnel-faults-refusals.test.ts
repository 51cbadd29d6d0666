// Refusals, end to end with the real CLI: the bastion refuses the channel (permitopen), the
// target refuses (closed port), the target never answers (SYNs dropped), the remote resolver is
// down. Each one, triggered 50 times, must give the client the right error, log a clear line a
// bounded number of times (not 50), and leave the tunnel up for everything else.
import { readFileSync, writeFileSync, appendFileSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun, run } from './lib/exec'
import { dropSyns, HoldClient, undropSyns } from './lib/faults'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
const TRIGGERS = 50
/** Most log lines 50 identical failures within a few seconds may produce. */
const MAX_LINES = 10

e2eDescribe('refusals (real CLI, real sshd)', () => {
  let tb: Testbed
  const holds: HoldClient[] = []

  useTestbed('tr', (t) => (tb = t), {
    tearDown: async (tb) => {
      await Promise.all(holds.map((h) => h.stop()))
      if (tb) await undropSyns(tb).catch(() => undefined)
    },
  })

  /** TRIGGERS connections at once to host:port through the tunnel; how they ended. */
  async function trigger(host: string, port: number, settleMs = 30_000) {
    const h = HoldClient.start(tb, host, port, TRIGGERS, { settleMs, holdMs: settleMs + 30_000 })
    holds.push(h)
    const started = Date.now()
    const s = await h.settled
    await h.stop()
    return { ...s, ms: s.t - started }
  }

  /** The tunnel's stderr lines matching re. */
  const lines = (t: Tunnel, re: RegExp): string[] => t.stderr.split('\n').filter((l) => re.test(l))

  /** A normal request still works, and the SSH connection never dropped. */
  async function expectStillUp(t: Tunnel): Promise<void> {
    const r = await curl(tb, tb.url(tb.env.privateIp))
    expect(r.stdout, describeRun(r)).toContain(HELLO)
    expect(t.hasExited).toBe(false)
    expect(t.stderr).not.toMatch(/connection lost/)
  }

  /**
   * TRIGGERS connections to the private host's port all end in a reset (none echoed, none left
   * hanging), and the tunnel says why in at least one and at most MAX_LINES lines naming it.
   */
  async function expectAllResetWithBoundedWarning(t: Tunnel, port: number, why: RegExp): Promise<void> {
    const s = await trigger(tb.env.privateIp, port)
    expect(s.echoed + s.timeout, JSON.stringify(s)).toBe(0)
    expect(s.reset, JSON.stringify(s)).toBe(TRIGGERS)
    const warned = lines(t, why)
    expect(warned.length, t.stderr).toBeGreaterThan(0)
    expect(warned.length, t.stderr).toBeLessThanOrEqual(MAX_LINES)
    expect(warned[0]).toContain(`${tb.env.privateIp}:${port}`)
  }

  async function stop(t: Tunnel): Promise<void> {
    expect((await t.stop()).code, t.stderr).toBe(0)
    expect(await leftoverRules(tb)).toEqual([])
  }

  it('the bastion refuses the channel (permitopen): reset, a bounded warning, other targets still work', async () => {
    // A key allowed to forward to the http port only (OpenSSH answers "administratively prohibited").
    const key = path.join(tb.env.dir, 'id_permitopen')
    const kg = await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key])
    expect(kg.code, describeRun(kg)).toBe(0)
    appendFileSync(path.join(tb.env.dir, 'authorized_keys'), `restrict,port-forwarding,permitopen="${tb.env.privateIp}:${tb.env.httpPort}" ${readFileSync(`${key}.pub`, 'utf8')}`)
    const config = path.join(tb.env.dir, 'ssh_config_permitopen')
    writeFileSync(config, readFileSync(tb.env.sshConfig, 'utf8').replace(/^Host bastion-fwdonly$/m, 'Host bastion-permitopen').replace(/id_fwdonly/g, 'id_permitopen'))
    // permitopen: the start-up probe cannot tell it from "no forwarding at all" (same answer).
    const t = await Tunnel.start(tb, ['-F', config, '-r', 'bastion-permitopen', '--no-forward-check', tb.env.privateNet])
    try {
      await expectStillUp(t)
      await expectAllResetWithBoundedWarning(t, tb.env.echoPort, /prohibited/i)
      await expectStillUp(t)
    } finally {
      await stop(t)
    }
  })

  it('the target refuses (closed port): reset, a bounded warning, the tunnel stays up', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet])
    try {
      await expectAllResetWithBoundedWarning(t, tb.env.closedPort, /refused/i)
      await expectStillUp(t)
    } finally {
      await stop(t)
    }
  })

  it('the target never answers (SYNs dropped): reset after the 15 s channel-open timeout, not a hang', async () => {
    await dropSyns(tb, tb.env.privateAltIp, tb.env.echoPort)
    const t = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet])
    try {
      const s = await trigger(tb.env.privateAltIp, tb.env.echoPort, 90_000)
      // sshd's own connect would wait for the kernel's SYN retries (~2 min); the dialer gives up
      // after 15 s and resets the client. Generous upper bound for a loaded machine.
      expect(s.echoed + s.timeout, JSON.stringify(s)).toBe(0)
      expect(s.reset, JSON.stringify(s)).toBe(TRIGGERS)
      expect(s.ms).toBeLessThan(45_000)
      const warned = lines(t, /did not answer within/)
      expect(warned.length, t.stderr).toBeGreaterThan(0)
      expect(warned.length, t.stderr).toBeLessThanOrEqual(MAX_LINES)
      // Meanwhile (50 opens still pending in sshd) and afterwards, the rest works.
      await expectStillUp(t)
    } finally {
      await undropSyns(tb)
      await stop(t)
    }
  })

  it('the remote resolver is down: SERVFAIL, a bounded warning, the tunnel stays up', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--ns-hosts', tb.env.unreachableNs, tb.env.privateNet])
    try {
      const ok = await tb.exec('client', ['dig', '+time=3', '+tries=1', '+short', `@${tb.env.unreachableNs}`, tb.env.dnsName])
      expect(ok.stdout.trim(), describeRun(ok)).toBe(tb.env.privateIp)
      // Stop the bastion's resolver stub (the resolver its resolv.conf names): every dnsmasq
      // process there, since dnsmasq serves each TCP connection (ours) from a forked child.
      const stub = (await tb.pids('bastion')).filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dnsmasq'
        } catch {
          return false
        }
      })
      expect(stub.length).toBeGreaterThan(0)
      for (const pid of stub) process.kill(pid, 'SIGKILL')
      const statuses: string[] = []
      for (let round = 0; round < TRIGGERS / 10; round++) {
        const rs = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            tb.exec('client', ['dig', '+time=8', '+tries=1', `@${tb.env.unreachableNs}`, `n${round}-${i}.${tb.env.dnsDomain}`], { timeoutMs: 20_000 }),
          ),
        )
        for (const r of rs) statuses.push(/status: (\w+)/.exec(r.stdout)?.[1] ?? `no answer: ${describeRun(r)}`)
      }
      expect(statuses).toEqual(Array(TRIGGERS).fill('SERVFAIL'))
      const warned = lines(t, /\[dns\] (warning|error)/)
      expect(warned.length, t.stderr).toBeGreaterThan(0)
      expect(warned.length, t.stderr).toBeLessThanOrEqual(MAX_LINES)
      await expectStillUp(t)
    } finally {
      await stop(t)
    }
  })
})
