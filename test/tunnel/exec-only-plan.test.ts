/** exec --only: which kernel match can see the command's cgroup, decided before anything starts. */
import { describe, expect, it } from 'vitest'
import { cgroup2Root } from '../../src/platform/os/cgroup'
import { planExecOnlyMatch, planExecOnlyMethod } from '../../src/tunnel/plan'

const linux = process.platform === 'linux'

describe.skipIf(!linux)('planExecOnlyMethod', () => {
  it('cgroup v2 at /sys/fs/cgroup: the method asked for (nft resolves paths there); elsewhere nat, or a clear refusal for nft', () => {
    expect(planExecOnlyMethod({ method: 'auto', gateway: false }, '/sys/fs/cgroup')).toBe('auto')
    expect(planExecOnlyMethod({ method: 'nft', gateway: false }, '/sys/fs/cgroup')).toBe('nft')
    expect(planExecOnlyMethod({ method: 'auto', gateway: false }, '/sys/fs/cgroup/unified')).toBe('nat')
    expect(() => planExecOnlyMethod({ method: 'nft', gateway: false }, '/sys/fs/cgroup/unified')).toThrow(/nft finds cgroups under \/sys\/fs\/cgroup only/)
  })

  it('tun: kept on both layouts; its mark is set by nft where nft resolves the cgroup and is installed, else by iptables', () => {
    expect(planExecOnlyMethod({ method: 'tun', gateway: false }, '/sys/fs/cgroup')).toBe('tun')
    expect(planExecOnlyMethod({ method: 'tun', gateway: false }, '/sys/fs/cgroup/unified')).toBe('tun')
    expect(planExecOnlyMatch('/sys/fs/cgroup', () => true)).toBe('nft')
    expect(planExecOnlyMatch('/sys/fs/cgroup', () => false)).toBe('iptables')
    expect(planExecOnlyMatch('/sys/fs/cgroup/unified', () => true)).toBe('iptables')
  })

  it('refused: pf, --gateway, no cgroup v2 at all', () => {
    expect(() => planExecOnlyMethod({ method: 'pf', gateway: false }, '/sys/fs/cgroup')).toThrow(/needs Linux/)
    expect(() => planExecOnlyMethod({ method: 'auto', gateway: true }, '/sys/fs/cgroup')).toThrow(/--gateway/)
    expect(() => planExecOnlyMethod({ method: 'auto', gateway: false }, undefined)).toThrow(/needs cgroup v2, and none is mounted/)
  })

  it('finds cgroup v2 in mountinfo (hybrid: the unified mount), not the v1 controllers', () => {
    const hybrid = [
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n')
    expect(cgroup2Root(hybrid)).toBe('/sys/fs/cgroup/unified')
    expect(cgroup2Root('30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n')).toBe('/sys/fs/cgroup')
    expect(cgroup2Root('32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n')).toBeUndefined()
  })
})
