/**
 * --auto-nets at run time around the pure parts: the command goes through the engine's exec
 * with the output bound, what an account that cannot run commands gets (REMOTE_EXEC with the
 * alternative), and what -v says about each route left out.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { formatCidr, parseCidr } from '../../src/config/cidr'
import { BASTION_ROUTES_COMMAND, MAX_ROUTES_OUTPUT } from '../../src/config/remote-routes'
import { TunnelError, isTunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'
import type { RemoteResult } from '../../src/ssh/engine'
import { discoverAutoNets, localInterfaceNetworks } from '../../src/tunnel/auto-nets-setup'

const fixture = (name: string): string => readFileSync(join(__dirname, '../config/fixtures/remote-routes', name), 'utf8')

function session(result: RemoteResult | Error) {
  const calls: { command: string; opts?: { timeoutMs?: number; maxBytes?: number } }[] = []
  return {
    calls,
    exec: async (command: string, opts?: { timeoutMs?: number; maxBytes?: number }): Promise<RemoteResult> => {
      calls.push({ command, opts })
      if (result instanceof Error) throw result
      return result
    },
  }
}

describe('discoverAutoNets', () => {
  it('runs the one route command, bounded, and tunnels what the bastion reaches', async () => {
    const s = session({ code: 0, stdout: fixture('linux-debian12.txt'), stderr: '' })
    const log = memoryLogger('verbose')
    const r = await discoverAutoNets(s, { bastionAddresses: [], localNetworks: [parseCidr('192.168.77.0/24')], log })
    expect(s.calls).toEqual([{ command: BASTION_ROUTES_COMMAND, opts: { timeoutMs: expect.any(Number), maxBytes: MAX_ROUTES_OUTPUT } }])
    const nets = r.include.map((i) => formatCidr(i.cidr))
    expect(nets).toContain('10.20.0.0/16')
    expect(nets).not.toContain('0.0.0.0/0')
    expect(r.include.every((i) => i.why.length > 0)).toBe(true)
    // Every dropped route is explained at -v.
    const notLines = log.lines.filter((l) => l.includes('auto-nets: not '))
    expect(notLines.length).toBe(r.choice.dropped.length)
    expect(notLines.some((l) => /default/.test(l))).toBe(true)
    expect(log.lines.some((l) => l.includes('auto-nets: tunnelling 10.20.0.0/16'))).toBe(true)
  })

  it('a forced command (nologin) that prints no table: REMOTE_EXEC saying to give the subnets', async () => {
    const s = session({ code: 1, stdout: 'This account is currently not available.\n', stderr: '' })
    const e = await discoverAutoNets(s, { bastionAddresses: [], localNetworks: [], log: memoryLogger() }).catch((x: unknown) => x)
    expect(isTunnelError(e, 'REMOTE_EXEC'), String(e)).toBe(true)
    expect((e as TunnelError).message).toContain('This account is currently not available.')
    expect((e as TunnelError).hint).toMatch(/ForceCommand.*name the subnets/)
  })

  it('an exec the server refuses: REMOTE_EXEC without the long command in the message', async () => {
    const refused = new TunnelError('REMOTE_EXEC', `ssh: the bastion refused to run "${BASTION_ROUTES_COMMAND}": prohibited`)
    const e = await discoverAutoNets(session(refused), { bastionAddresses: [], localNetworks: [], log: memoryLogger() }).catch((x: unknown) => x)
    expect(isTunnelError(e, 'REMOTE_EXEC')).toBe(true)
    expect((e as TunnelError).message).not.toContain('@@subnet-tunnel')
    expect((e as TunnelError).message).toContain('prohibited')
    expect((e as TunnelError).hint).toMatch(/name the subnets/)
  })

  it('only the link to us and the default route: NO_SUBNETS, not an empty tunnel', async () => {
    const out = '@@subnet-tunnel:ip4\ndefault via 10.250.0.254 dev eth0\n10.250.0.0/24 dev eth0 proto kernel scope link src 10.250.0.1\n@@subnet-tunnel:end\n'
    const e = await discoverAutoNets(session({ code: 0, stdout: out, stderr: '' }), {
      bastionAddresses: ['10.250.0.1'],
      localNetworks: [parseCidr('10.250.0.0/24')],
      log: memoryLogger(),
    }).catch((x: unknown) => x)
    expect(isTunnelError(e, 'NO_SUBNETS'), String(e)).toBe(true)
  })
})

describe('localInterfaceNetworks', () => {
  it('takes each interface network with its prefix, not loopback', () => {
    const nets = localInterfaceNetworks({
      lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
      eth0: [
        { address: '10.250.0.2', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.250.0.2/24' },
        { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1%eth0/64', scopeid: 2 },
      ],
    })
    expect(nets.map(formatCidr)).toEqual(['10.250.0.0/24', 'fe80::/64'])
  })
})
