/**
 * planTunnel validates every argument offline: a bad one exits 2 (USAGE and friends) before any
 * process starts (`ssh -G`, resolvectl) or any packet is sent (host names of subnets). Before,
 * -L and -R were parsed only once SSH was up, so `-L notaspec` surfaced as an SSH error.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { exitCodeFor } from '../../src/cli/report-error'
import { TunnelError } from '../../src/errors'
import type { TunnelConfig } from '../../src/tunnel/config'
import { type PlanSystem, planTunnel } from '../../src/tunnel/plan'
import { hostCfg } from '../ssh/helpers'

function config(over: Partial<TunnelConfig> = {}): TunnelConfig {
  return {
    remote: 'bastion',
    subnets: ['10.0.0.0/16'],
    exclude: [],
    identity: [],
    sshOption: [],
    method: 'auto',
    sshEngine: 'builtin',
    dns: { enabled: false, nsHosts: [], toNs: [], domains: [], cache: true },
    socks: [],
    httpProxy: [],
    allow: [],
    localForwards: [],
    remoteForwards: [],
    auditDns: false,
    gateway: false,
    gatewayInterfaces: [],
    ownerOnly: false,
    connections: 1,
    connectionsMax: 16,
    ...over,
  }
}

/** A system that records what it was asked. */
function system(asked: string[]): PlanSystem {
  return {
    detectOpenssh: async () => {
      asked.push('detectOpenssh')
      return { ok: false, why: 'no ssh client on PATH' }
    },
    planDns: async () => {
      asked.push('planDns')
      return { capture: ['10.0.0.2'], localUpstreams: [], toNs: [], domains: [], usesResolved: false, cache: true }
    },
    resolveNetworks: async (items) => {
      asked.push(`resolveNetworks ${items.join(',')}`)
      const { parseCidr } = await import('../../src/config/cidr')
      return items.map(parseCidr)
    },
    resolveSshConfig: async (r) => {
      asked.push(`ssh -G ${r.destination}`)
      return hostCfg({ port: 22, alias: r.destination, hostName: '192.0.2.1' })
    },
  }
}

async function refused(c: TunnelConfig): Promise<{ err: TunnelError; asked: string[] }> {
  const asked: string[] = []
  const err = (await planTunnel(c, system(asked)).then(
    () => undefined,
    (e: unknown) => e,
  )) as TunnelError
  expect(err, 'planTunnel accepted it').toBeInstanceOf(TunnelError)
  return { err, asked }
}

describe('planTunnel: every argument checked before the system is asked', () => {
  it('a good command line resolves DNS, subnets and the ssh configuration, in that order', async () => {
    const asked: string[] = []
    const p = await planTunnel(config({ localForwards: ['5432:db:5432'], remoteForwards: ['8022:127.0.0.1:22'] }), system(asked))
    expect(asked).toEqual(['resolveNetworks 10.0.0.0/16', 'resolveNetworks ', 'ssh -G bastion'])
    expect(p.localForwards[0]).toMatchObject({ text: '5432:db:5432', spec: { kind: 'local', host: 'db', hostPort: 5432 } })
    expect(p.remoteForwards[0]).toMatchObject({ text: '8022:127.0.0.1:22', spec: { kind: 'remote', bindPort: 8022 } })
  })

  it.each([
    ['-L notaspec', { localForwards: ['notaspec'] }, /-L "notaspec"/],
    ['-R notaspec', { remoteForwards: ['notaspec'] }, /-R "notaspec"/],
    ['-L with a port out of range', { localForwards: ['70000:db:5432'] }, /-L/],
    ['--listen nonsense', { listen: 'nonsense:x' }, /listen/],
    ['-D nonsense', { socks: ['x:y:z'] }, /-D/],
    ['--allow not-a-cidr', { allow: ['10.0.0.0/33'] }, /10\.0\.0\.0\/33/],
    ['--proxy-auth without a colon', { socks: ['1080'], proxyAuth: 'alice' }, /proxy-auth/],
    ['--tun-engine without --method tun', { tunEngine: 'tun2socks' }, /--tun-engine needs --method tun/],
    ['--gateway without subnets', { subnets: [], socks: ['1080'], gateway: true }, /--gateway needs subnets/],
    ['--dns without subnets', { subnets: [], socks: ['1080'], dns: { enabled: true, nsHosts: [], toNs: [], domains: [], cache: true } }, /--dns needs/],
    ['SUBNET= without a remote', { subnets: ['10.0.0.0/16='] }, /expected SUBNET=REMOTE/],
    ['--fail-closed without subnets', { subnets: [], socks: ['1080'], failClosed: true }, /--fail-closed needs subnets/],
    ['exec --only without subnets', { subnets: [], socks: ['1080'], execOnly: true }, /exec --only needs subnets/],
    ['exec --only with --fail-closed', { execOnly: true, failClosed: true }, /--fail-closed does not go with exec --only/],
  ] as const)('%s: exit 2, and nothing was resolved or run', async (_what, over, message) => {
    const { err, asked } = await refused(config(over as Partial<TunnelConfig>))
    expect(err.message).toMatch(message)
    expect(exitCodeFor(err)).toBe(2)
    expect(asked).toEqual([])
  })
})

describe('the CLI with a bad -L or -R (needs `npm run build`)', () => {
  const root = path.resolve(__dirname, '..', '..')
  const bin = path.join(root, JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).bin['subnet-tunnel'])

  it.each([['-L'], ['-R']])('%s notaspec exits 2 before `ssh -G` runs', (flag) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'st-plan-'))
    try {
      // An ssh on PATH that only leaves a mark: it must never run.
      const marker = path.join(dir, 'ssh-ran')
      writeFileSync(path.join(dir, 'ssh'), `#!/bin/sh\ntouch ${marker}\nexit 1\n`)
      chmodSync(path.join(dir, 'ssh'), 0o755)
      const r = spawnSync(process.execPath, [bin, '-r', 'bastion', flag, 'notaspec', '10.0.0.0/16'], {
        encoding: 'utf8',
        env: { PATH: `${dir}:/usr/bin:/bin`, HOME: dir, SUBNET_TUNNEL_NO_TTY: '1' },
        timeout: 15_000,
      })
      expect(r.status, r.stderr).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`${flag} "notaspec".*\\[USAGE\\]`))
      expect(existsSync(marker)).toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('--route-by-name and the methods', () => {
  const byName = (over: Partial<TunnelConfig> = {}): TunnelConfig =>
    config({ subnets: [], dns: { enabled: true, nsHosts: [], toNs: [], domains: ['corp.internal'], cache: true, routeByName: true }, ...over })

  it('--method tun: no subnet needed, the capture is planned for learnt addresses', async () => {
    const p = await planTunnel(byName({ method: 'tun' }), system([]))
    expect(p).toMatchObject({ method: 'tun', tunEngine: 'builtin', routeByName: true, capture: true, includes: [] })
  })

  it('macOS: refused before anything is asked (neither pf nor its utun takes learnt addresses)', async () => {
    const platform = Object.getOwnPropertyDescriptor(process, 'platform')!
    Object.defineProperty(process, 'platform', { value: 'darwin' })
    try {
      for (const method of ['tun', 'auto'] as const) {
        const { err, asked } = await refused(byName({ method }))
        expect(err.message).toMatch(/--route-by-name is available on Linux only/)
        expect(asked).toEqual([])
      }
    } finally {
      Object.defineProperty(process, 'platform', platform)
    }
  })
})
