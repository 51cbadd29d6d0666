import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { SAFE_PATH, applyPlan, isMissingObjectError, realExecutor, revertSteps, runSteps } from '../../../src/platform/firewall/executor'
import { FakeExecutor } from '../../fakes/fake-executor'
import { natPlan } from '../../../src/platform/firewall/nat'

const plan = natPlan({ instanceId: 'ab12', listenPort: 4000, include: [parseCidr('10.0.0.0/8')], exclude: [] })

describe('applyPlan', () => {
  it('runs every step in order when all succeed', async () => {
    const x = new FakeExecutor()
    await applyPlan(x, plan)
    expect(x.calls).toEqual(plan.apply)
  })

  it('stops at the first failure, runs the full revert, then throws FW_APPLY naming the step', async () => {
    const x = new FakeExecutor().failAt(2, "iptables v1.8.9: Couldn't load match `addrtype'\nTry `iptables -h'")
    const err = await applyPlan(x, plan).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'FW_APPLY', message: "iptables: -A: iptables v1.8.9: Couldn't load match `addrtype'" })
    // three apply steps ran (the third failed), nothing after it, then every revert step
    expect(x.calls).toEqual([...plan.apply.slice(0, 3), ...plan.revert])
  })

  it('a missing binary gives an install hint', async () => {
    const x = new FakeExecutor().failAt(0, 'iptables: not found', 127)
    await expect(runSteps(x, plan.apply)).rejects.toMatchObject({ code: 'FW_APPLY', hint: expect.stringContaining('install') })
  })
})

describe('revertSteps', () => {
  it('runs all steps and ignores "already gone" errors only', async () => {
    const x = new FakeExecutor()
      .failAt(0, 'iptables: Bad rule (does a matching rule exist in that chain?).')
      .failAt(1, 'iptables: No chain/target/match by that name.')
      .failAt(2, 'iptables: Resource busy')
    const r = await revertSteps(x, plan.revert)
    expect(x.calls).toEqual(plan.revert)
    expect(r.failed).toEqual([{ argv: plan.revert[2], error: 'iptables: -X: iptables: Resource busy' }])
  })

  it('recognises the tools’ "does not exist" messages', () => {
    expect(isMissingObjectError('Error: Could not process rule: No such file or directory')).toBe(true)
    expect(isMissingObjectError("iptables v1.8.9 (nf_tables): Chain 'subnet-tunnel-y' does not exist")).toBe(true)
    expect(isMissingObjectError('Error: Could not process rule: Operation not permitted')).toBe(false)
  })
})

describe('realExecutor', () => {
  it('returns code/stdout/stderr, 127 for a missing binary, 124 on timeout, and feeds stdin', async () => {
    const x = realExecutor({ timeoutMs: 500 })
    expect(await x.run(['echo', 'hi'])).toEqual({ code: 0, stdout: 'hi\n', stderr: '' })
    expect((await x.run(['sh', '-c', 'echo oops >&2; exit 3'])).code).toBe(3)
    expect(await x.run(['sh', '-c', 'echo oops >&2; exit 3'])).toMatchObject({ stderr: 'oops\n' })
    expect((await x.run(['definitely-not-a-binary-xyz'])).code).toBe(127)
    expect((await x.run(['sleep', '5'])).code).toBe(124)
    expect((await x.run(['cat'], { input: 'from stdin' })).stdout).toBe('from stdin')
    // no shell: metacharacters are plain argv
    expect((await x.run(['echo', '$(id); ls'])).stdout).toBe('$(id); ls\n')
  })

  it('gives rule tools only PATH and LC_ALL=C, never our environment (secrets included)', async () => {
    process.env.ST_TEST_SECRET = 'alice:s3cret'
    try {
      const r = await realExecutor().run(['env'])
      expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual([`LC_ALL=C`, `PATH=${SAFE_PATH}`])
    } finally {
      delete process.env.ST_TEST_SECRET
    }
  })
})
