import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { parsePids, newPids } = require('../../scripts/bench-lib/teardown-check.js')

describe('teardown check: processes left in the namespaces', () => {
  it('parses `ip netns pids` and lists only the pids that were not there at the start', () => {
    expect(parsePids('101\n202\n\n')).toEqual([101, 202])
    expect(newPids({ client: [], bastion: [10, 11] }, { client: [40], bastion: [10, 11, 12], private: [7] })).toEqual([
      { role: 'client', pid: 40 }, { role: 'bastion', pid: 12 }, { role: 'private', pid: 7 },
    ])
    expect(newPids({ client: [1] }, { client: [1] })).toEqual([])
  })
})
