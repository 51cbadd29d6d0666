import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { prefixMask, redirectedFlowsFlushArgv, staleFlowsBeforeApply } from '../../../src/platform/firewall/stale-flows'

describe('stale redirected flows (conntrack deletions)', () => {
  it('spells each prefix as the netmask conntrack takes, both families, /0 and host routes included', () => {
    expect(prefixMask(parseCidr('10.0.0.0/8'))).toBe('255.0.0.0')
    expect(prefixMask(parseCidr('0.0.0.0/0'))).toBe('0.0.0.0')
    expect(prefixMask(parseCidr('10.1.2.3/32'))).toBe('255.255.255.255')
    expect(prefixMask(parseCidr('fd00::/8'))).toBe('ff00::')
    expect(prefixMask(parseCidr('fd00::1/128'))).toBe('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')
  })

  it('deletes only redirected flows (reply from loopback), and with a port only those to that listener', () => {
    const [v4, v6] = redirectedFlowsFlushArgv([parseCidr('10.1.0.0/16'), parseCidr('fd00:1::/64')])
    expect(v4).toEqual(['conntrack', '-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '10.1.0.0', '--mask-dst', '255.255.0.0', '--reply-src', '127.0.0.1'])
    expect(v6).toEqual(['conntrack', '-D', '-f', 'ipv6', '-p', 'tcp', '--orig-dst', 'fd00:1::', '--mask-dst', 'ffff:ffff:ffff:ffff::', '--reply-src', '::1'])
    expect(redirectedFlowsFlushArgv([parseCidr('10.1.0.0/16')], 4100)[0]!.slice(-2)).toEqual(['--reply-port-src', '4100'])
  })
  it('before apply: only when the capture covers every user (not --owner-only, not exec --only: other users\' flows are not ours)', () => {
    const include = [parseCidr('10.1.0.0/16')]
    expect(staleFlowsBeforeApply({ include })).toEqual(redirectedFlowsFlushArgv(include))
    expect(staleFlowsBeforeApply({ include, ownerUid: 1000 })).toEqual([])
    expect(staleFlowsBeforeApply({ include, cgroup: 'subnet-tunnel-ab12' })).toEqual([])
  })
})
