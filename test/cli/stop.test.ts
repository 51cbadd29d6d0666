import { describe, expect, it } from 'vitest'
import { selectToStop } from '../../src/cli/stop'
import type { FoundInstance } from '../../src/status/control-client'
import type { StatusSnapshot } from '../../src/status/status-types'

function inst(instanceId: string, pid: number, remote: string, profile?: string): FoundInstance {
  const status = {
    pid,
    instanceId,
    ...(profile && { profile }),
    remotes: [{ name: remote, hostPort: `${remote}:22`, state: 'up', reconnects: 0, channelsOpen: 0 }],
  } as unknown as StatusSnapshot
  return { socketPath: `/run/x/${instanceId}.sock`, status }
}

const a = inst('a1b2c3d4', 10, 'bastion', 'work')
const b = inst('a1ffee00', 11, 'lab')
const c = inst('9e9e9e9e', 12, 'bastion')
const ids = (l: FoundInstance[]) => l.map((f) => f.status.instanceId)

describe('stop: which instances a target means', () => {
  it('no target: the only instance, or a list to choose from', () => {
    expect(ids(selectToStop([a], undefined, false))).toEqual(['a1b2c3d4'])
    expect(ids(selectToStop([], undefined, false))).toEqual([])
    expect(() => selectToStop([a, b], undefined, false)).toThrow(/2 instances are running: a1b2c3d4 \(pid 10, profile work, bastion\); a1ffee00 \(pid 11, lab\)/)
    expect(ids(selectToStop([a, b, c], undefined, true))).toEqual(['a1b2c3d4', 'a1ffee00', '9e9e9e9e'])
  })

  it('an id, a unique start of one, a profile, or a remote', () => {
    expect(ids(selectToStop([a, b, c], 'a1b2c3d4', false))).toEqual(['a1b2c3d4'])
    expect(ids(selectToStop([a, b, c], 'a1b', false))).toEqual(['a1b2c3d4'])
    expect(() => selectToStop([a, b, c], 'a1', false)).toThrow(/"a1" starts more than one instance id/)
    expect(ids(selectToStop([a, b, c], 'work', false))).toEqual(['a1b2c3d4'])
    expect(ids(selectToStop([a, b, c], 'bastion', false))).toEqual(['a1b2c3d4', '9e9e9e9e'])
    expect(ids(selectToStop([a, b, c], 'nothing', false))).toEqual([])
  })
})
