// Crash safety: the privileged helper reverts when the main process dies; when both die, the
// state journal lets `cleanup` (and the next start) remove what they left.
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel, waitGone } from './lib/cli'
import { describeRun } from './lib/exec'
import { leftoverRules, waitForNoRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'

/** Names of subnet-tunnel kernel objects (chains/tables) in a leftoverRules() listing. */
function objectNames(lines: string[]): Set<string> {
  return new Set(lines.flatMap((l) => l.match(/subnet-tunnel-[A-Za-z0-9_-]+/g) ?? []))
}

/**
 * SIGKILLs the CLI and every descendant (the helper, through sudo or not). The descendants are
 * stopped first so none of them can react to the main process's death (the helper reverts when
 * its stdin closes) before its own SIGKILL lands.
 */
function killAll(t: Tunnel): number[] {
  const kids = t.descendants()
  for (const pid of kids) process.kill(pid, 'SIGSTOP')
  process.kill(t.pid, 'SIGKILL')
  for (const pid of kids) process.kill(pid, 'SIGKILL')
  return kids
}

e2eDescribe('crash safety (real CLI, real kernel)', () => {
  let tb: Testbed

  useTestbed('tc', (t) => (tb = t), {
    cleanup: true,
  })

  const start = (): Promise<Tunnel> => Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet, tb.env.privateNet6])

  it('kill -9 of the main process: the helper removes every rule within 2 s', async () => {
    const t = await start()
    expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
    const kids = t.descendants()
    expect(kids, 'the privileged helper runs as a child of the CLI').not.toHaveLength(0)
    expect(await leftoverRules(tb)).not.toHaveLength(0)
    const killedAt = Date.now()
    process.kill(t.pid, 'SIGKILL')
    const left = await waitForNoRules(tb, 2_000)
    console.log(`[measure] kill -9 main → rules gone after ${Date.now() - killedAt} ms`)
    expect(left).toEqual([])
    expect(await waitGone(kids, 2_000), 'the helper exits too').toEqual([])
  })

  it('kill -9 of main and helper: rules remain, `subnet-tunnel cleanup` removes them all', async () => {
    const t = await start()
    const kids = killAll(t)
    expect(kids).not.toHaveLength(0)
    await t.exited
    // Dead for the kernel is not dead for a pid check until reaped (see waitGone).
    expect(await waitGone(kids, 5_000, { reaped: true })).toEqual([])
    const left = await leftoverRules(tb)
    expect(left, 'nobody was left to revert').not.toHaveLength(0)
    const r = await runCli(tb, ['cleanup'])
    expect(r.code, describeRun(r)).toBe(0)
    // What the helper's own start-up sweep removed is reported too, not "nothing to remove".
    expect(r.stderr).toMatch(/^subnet-tunnel cleanup: removed instance [0-9a-f]+ \((nat|nft)\)/m)
    expect(await leftoverRules(tb)).toEqual([])
    // cleanup is idempotent
    const again = await runCli(tb, ['cleanup'])
    expect(again.code, describeRun(again)).toBe(0)
    expect(again.stderr).toContain('subnet-tunnel cleanup: nothing to remove')
  })

  it('kill -9 of both, then a new start removes the dead instance’s leftovers', async () => {
    const dead = await start()
    const kids = killAll(dead)
    await dead.exited
    expect(await waitGone(kids, 5_000, { reaped: true })).toEqual([])
    const before = objectNames(await leftoverRules(tb))
    expect(before.size).toBeGreaterThan(0)
    const t = await start()
    try {
      const now = objectNames(await leftoverRules(tb))
      for (const name of before) expect(now.has(name), `${name} of the dead instance is still there`).toBe(false)
      expect(t.stderr).toMatch(/\[fw\] removed what a dead instance left behind: instance [0-9a-f]+ \((nat|nft)\)/)
      expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
    } finally {
      await t.stop('SIGTERM')
    }
    expect(await leftoverRules(tb)).toEqual([])
  })
})
