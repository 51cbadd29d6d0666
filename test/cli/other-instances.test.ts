import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { checkClashes, clashes } from '../../src/cli/other-instances'
import { logFileFor } from '../../src/cli/log-setup'
import { memoryLogger } from '../../src/observe/logger'
import type { FoundInstance } from '../../src/status/control-client'
import type { StatusSnapshot } from '../../src/status/status-types'

const inst = (instanceId: string, pid: number, subnets: string[], profile?: string): FoundInstance => ({
  socketPath: `/x/${instanceId}.sock`,
  status: { instanceId, pid, subnets, ...(profile && { profile }) } as unknown as StatusSnapshot,
})

describe('a second instance for the same subnets', () => {
  const ours = [parseCidr('10.0.0.0/16'), parseCidr('fd00::/64')]
  const found = [
    inst('aaaa', 100, ['10.0.5.0/24=lab', '192.168.0.0/16'], 'work'),
    inst('bbbb', 101, ['10.1.0.0/16', 'fd00::1/128']),
    inst('cccc', 102, ['172.16.0.0/12']),
    inst('self', 103, ['10.0.0.0/16']),
  ]

  it('finds the instances whose subnets overlap ours (not ourselves)', () => {
    expect(clashes(found, ours, 103).map((c) => [c.instance.status.instanceId, c.subnets])).toEqual([
      ['aaaa', ['10.0.5.0/24']],
      ['bbbb', ['fd00::1/128']],
    ])
    expect(clashes(found, [parseCidr('10.9.0.0/16')], 103)).toEqual([])
  })

  it('refuses naming the instance, its pid and how to stop it; --force only warns, saying who wins', () => {
    const c = clashes(found, ours, 103)
    expect(() => checkClashes(c, ours, false, memoryLogger())).toThrow(
      expect.objectContaining({
        code: 'ALREADY_RUNNING',
        message: expect.stringContaining('instance aaaa (pid 100, profile work) already captures 10.0.5.0/24; instance bbbb (pid 101) already captures fd00::1/128'),
        hint: expect.stringMatching(/^stop it first \(subnet-tunnel stop work\), or start with --force \(with --method nat the newest instance takes/),
      }),
    )
    const log = memoryLogger()
    checkClashes(c, ours, true, log)
    expect(log.lines).toEqual([expect.stringMatching(/^\[cli\] warning: instance aaaa .* starting anyway \(--force\); with --method nat the newest/)])
    checkClashes([], ours, false, log)
  })
})

describe('where the log goes', () => {
  it('--log-file as given (absolute); -f: under $XDG_STATE_HOME or ~/.local/state, named after the profile or remote', () => {
    expect(logFileFor({ logFile: '/var/log/t.log', background: false })).toBe('/var/log/t.log')
    expect(logFileFor({ background: false, remote: 'b' })).toBeUndefined()
    expect(logFileFor({ background: true, profile: 'work', remote: 'b' }, { XDG_STATE_HOME: '/s' })).toBe('/s/subnet-tunnel/work.log')
    expect(logFileFor({ background: true, remote: 'admin@bastion:2222' }, { HOME: '/home/u' })).toBe('/home/u/.local/state/subnet-tunnel/admin@bastion_2222.log')
    expect(logFileFor({ background: true, remote: '../../etc/x' }, { HOME: '/h' })).toBe('/h/.local/state/subnet-tunnel/__.._etc_x.log')
  })
})
