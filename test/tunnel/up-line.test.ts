import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import type { TunnelPlan } from '../../src/tunnel/plan'
import { upLine, type UpLineState } from '../../src/tunnel/up-line'
import type { DnsRuntime } from '../../src/tunnel/dns-setup'
import { hostCfg } from '../ssh/helpers'

function state(toNs: boolean, remote: Array<{ host: string; port: number }>): UpLineState {
  const plan = {
    remotes: [{ name: 'bastion', target: hostCfg({ port: 22, alias: 'bastion', hostName: '192.0.2.1', user: 'admin' }), hops: [] }],
    defaultRemote: 'bastion',
    includes: [{ cidr: parseCidr('10.0.0.0/16') }],
    userExcludes: [],
    gateway: false,
    dns: { toNs: toNs ? remote : [], domains: [] },
  } as unknown as TunnelPlan
  return { plan, frontEnds: [], dns: { remote } as unknown as DnsRuntime }
}

describe('the up line', () => {
  it("says whose resolver answers DNS: the bastion's own (127.0.0.53 is not this machine's stub), or the --to-ns server through it", () => {
    expect(upLine(state(false, [{ host: '127.0.0.53', port: 53 }]))).toBe(
      "subnet-tunnel up: remote admin@192.0.2.1:22, subnets 10.0.0.0/16, DNS → bastion's resolver 127.0.0.53",
    )
    expect(upLine(state(true, [{ host: '10.0.0.2', port: 53 }, { host: 'fd00::53', port: 5353 }]))).toBe(
      'subnet-tunnel up: remote admin@192.0.2.1:22, subnets 10.0.0.0/16, DNS → 10.0.0.2, [fd00::53]:5353 through bastion',
    )
  })
})
