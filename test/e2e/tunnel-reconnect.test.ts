// The bastion's sshd dies and comes back: connections during the outage fail within the bound
// (never hang), the rules stay in place, and the tunnel reconnects by itself.
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun, run } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl, firstSuccess } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('reconnect (real CLI, real sshd killed and restarted)', () => {
  let tb: Testbed

  useTestbed('tr', (t) => (tb = t))

  it('sshd killed: outage fails fast, rules stay, the tunnel comes back when sshd does', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=2', tb.env.privateNet])
    try {
      const before = await curl(tb, tb.url(tb.env.privateIp))
      expect(before.stdout, describeRun(before)).toContain(HELLO)
      const rules = (await leftoverRules(tb)).join('\n')
      expect(rules).toMatch(/subnet-tunnel/)

      // Kill every sshd in the bastion: the listener and the session serving our connection.
      for (const pid of await tb.pids('bastion')) process.kill(pid, 'SIGKILL')
      expect(await tb.waitForNoPids('bastion', 3000)).toEqual([])

      // During the outage a new connection is accepted locally, waits a bounded time for the
      // SSH connection, then is reset: curl fails, and well before its own 30 s limit.
      const t0 = Date.now()
      const during = await curl(tb, tb.url(tb.env.privateIp), { connectTimeoutS: 30, maxTimeS: 30 })
      const waited = Date.now() - t0
      expect(during.code, describeRun(during)).not.toBe(0)
      expect(waited).toBeLessThan(15_000)
      // The rules never flapped: same objects as before the outage.
      expect((await leftoverRules(tb)).join('\n')).toBe(rules)

      // sshd comes back (same config, same host key); the session reconnects with backoff.
      const started = await run(tb.nsArgv('bastion', ['/usr/sbin/sshd', '-f', path.join(tb.env.dir, 'sshd_config')]))
      expect(started.code, describeRun(started)).toBe(0)
      await firstSuccess(tb, tb.url(tb.env.privateIp), 40_000)
      expect(t.stderr).toMatch(/connection lost/)
      expect(t.stderr).toMatch(/re-established/)
      // Each failed attempt says why (sshd was down: refused), and each event is one line.
      expect(t.stderr).toMatch(/\[ssh\] reconnecting to bastion in [\d.]+ s \(attempt \d+; attempt \d+ failed: .*connection refused\)/i)
      expect(t.stderr.split('\n').filter((l) => /connection lost/.test(l)), t.stderr).toHaveLength(1)
      expect(t.hasExited).toBe(false)
    } finally {
      expect((await t.stop()).code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})
