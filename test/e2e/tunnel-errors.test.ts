// Bad input and hostile or broken bastions: a non-zero exit, a clear message on stderr, no
// stack trace, and nothing left in the kernel. Exit codes are not pinned, only "non-zero".
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, type RunResult } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

/** Common expectations for a refused start. */
async function expectCleanFailure(tb: Testbed, r: RunResult, message: RegExp, maxLines = 4): Promise<void> {
  expect(r.timedOut, describeRun(r)).toBe(false)
  expect(r.code, describeRun(r)).not.toBe(0)
  expect(r.code, describeRun(r)).not.toBeNull()
  expect(r.stderr, describeRun(r)).toMatch(message)
  expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m)
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '')
  expect(lines.length, `a short message, got:\n${r.stderr}`).toBeLessThanOrEqual(maxLines)
  expect(r.stderr, 'no "up" line on a failed start').not.toMatch(/\bup:/)
  expect(await leftoverRules(tb)).toEqual([])
}

e2eDescribe('errors (real CLI, real sshd)', () => {
  let tb: Testbed

  useTestbed('te', (t) => (tb = t))

  it('changed host key: refused with OpenSSH-style warning, nothing applied', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-badkey'), tb.env.privateNet])
    // The warning banner is several lines long by design (OpenSSH's text and the fingerprint).
    await expectCleanFailure(tb, r, /REMOTE HOST IDENTIFICATION HAS CHANGED|host key/i, 30)
    expect(r.stderr).toMatch(/SHA256:[A-Za-z0-9+/]{43}/)
  })

  it('unknown host key without a TTY: refused, nothing applied', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-nokey'), tb.env.privateNet])
    await expectCleanFailure(tb, r, /host key|known_hosts|authenticity/i, 10)
  })

  it('authentication failure: refused, nothing applied', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-badauth'), tb.env.privateNet])
    await expectCleanFailure(tb, r, /auth|permission denied/i)
  })

  it('bad CIDR: one clear error naming it, before any connection', async () => {
    const r = await runCli(tb, [...remoteArgs(tb), '10.251.0.0/33'])
    await expectCleanFailure(tb, r, /10\.251\.0\.0\/33/)
    expect(r.ms).toBeLessThan(10_000)
  })

  it('no subnets: says so', async () => {
    const r = await runCli(tb, remoteArgs(tb))
    await expectCleanFailure(tb, r, /subnet/i)
  })

  it('unknown host: names it', async () => {
    const r = await runCli(tb, ['-F', tb.env.sshConfig, '-r', 'root@no-such-host.invalid', tb.env.privateNet])
    await expectCleanFailure(tb, r, /no-such-host\.invalid/)
  })

  it('connection refused (-p 2222): says so', async () => {
    const r = await runCli(tb, [...remoteArgs(tb), '-p', '2222', tb.env.privateNet])
    await expectCleanFailure(tb, r, /refused/i)
  })

  it('forwarding prohibited by the server: "up" is refused at start, with the reason', async () => {
    const r = await runCli(tb, [...remoteArgs(tb, 'bastion-nofwd'), tb.env.privateNet, '-D', '11090'])
    await expectCleanFailure(tb, r, /bastion-nofwd does not permit TCP forwarding for this account: a probe channel was "administratively prohibited" \[FORWARDING_PROHIBITED\]/)
    expect(r.stderr).toContain('--no-forward-check')
  })

  it('forwarding prohibited, with --no-forward-check: connections are reset fast and the reason is logged', async () => {
    const t = await Tunnel.start(tb, ['-v', '--no-forward-check', ...remoteArgs(tb, 'bastion-nofwd'), tb.env.privateNet])
    try {
      const r = await curl(tb, tb.url(tb.env.privateIp), { maxTimeS: 10 })
      expect([7, 56], describeRun(r)).toContain(r.code)
      expect(r.ms).toBeLessThan(2_000)
      await new Promise((res) => setTimeout(res, 200))
      expect(t.stderr).toMatch(/prohibited/i)
      expect(t.stderr).toContain(tb.env.privateIp)
    } finally {
      const exit = await t.stop('SIGTERM')
      expect(exit.code, t.stderr).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})
