import { describe, expect, it } from 'vitest'
import { installedMethods } from '../../../src/platform/firewall/installed'

describe('installedMethods (for --version)', () => {
  const on = (...present: string[]) => (p: string) => present.includes(p)
  it('lists the methods whose tools exist, in the order auto tries them, also from sbin off PATH', () => {
    expect(installedMethods('linux', '/usr/local/bin:/usr/bin', on('/usr/sbin/nft', '/usr/sbin/iptables', '/usr/bin/ip', '/dev/net/tun'))).toEqual(['nft', 'nat', 'tun'])
    expect(installedMethods('linux', '/usr/bin', on('/usr/sbin/iptables'))).toEqual(['nat'])
    // ip without the device node is no tun.
    expect(installedMethods('linux', '/usr/bin', on('/usr/bin/ip'))).toEqual([])
    expect(installedMethods('darwin', '/usr/bin', on('/sbin/pfctl'))).toEqual(['pf'])
    expect(installedMethods('win32', '', () => true)).toEqual([])
  })
})
