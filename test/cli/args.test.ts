import { describe, expect, it } from 'vitest'
import { parseArgs } from '../../src/cli/args'

const quiet = { stdout: () => {}, stderr: () => {} }
const parse = (...a: string[]) => parseArgs(a, '1.2.3', quiet)

describe('parseArgs', () => {
  it('parses the full tunnel surface', () => {
    const r = parse(
      '-r', 'admin@bastion:2222', '10.0.0.0/16', 'fd00::/64', 'db.internal',
      '-x', '10.0.5.0/24', '-x', '10.0.6.1', '-i', 'k1', '-i', 'k2', '-F', 'cfg', '-J', 'a,b:2200',
      '-p', '2022', '-o', 'User=bob', '-oServerAliveInterval=5', '--method', 'nft', '--ssh-engine', 'openssh', '--listen', '12345',
      '--pidfile', '/tmp/p', '-vv',
    )
    expect(r).toEqual({
      kind: 'tunnel',
      args: {
        remote: 'admin@bastion:2222',
        subnets: ['10.0.0.0/16', 'fd00::/64', 'db.internal'],
        exclude: ['10.0.5.0/24', '10.0.6.1'],
        identity: ['k1', 'k2'],
        sshConfig: 'cfg',
        jump: 'a,b:2200',
        port: 2022,
        sshOption: ['User=bob', 'ServerAliveInterval=5'],
        method: 'nft',
        sshEngine: 'openssh',
        listen: '12345',
        pidfile: '/tmp/p',
        dns: { enabled: false, nsHosts: [], toNs: [], domains: [], cache: true },
        socks: [],
        httpProxy: [],
        proxyAuth: undefined,
        allow: [],
        localForwards: [],
        remoteForwards: [],
        background: false,
        auditLog: undefined,
        auditDns: false,
        gateway: false,
        gatewayInterfaces: [],
        ownerOnly: false,
        connections: 1,
        connectionsMax: 16,
        exec: undefined,
        verbose: 2,
        quiet: 0,
        force: false,
      },
    })
  })

  it('defaults method to auto and takes -r from the environment', () => {
    process.env.SUBNET_TUNNEL_REMOTE = 'envhost'
    try {
      const r = parse('10.0.0.0/8')
      expect(r.kind === 'tunnel' && r.args.remote).toBe('envhost')
      expect(r.kind === 'tunnel' && r.args.method).toBe('auto')
    } finally {
      delete process.env.SUBNET_TUNNEL_REMOTE
    }
  })

  it('parses DNS options; --ns-hosts and --dns-domain imply --dns', () => {
    const a = parse('-r', 'b', '10.0.0.0/8', '--ns-hosts', '10.0.0.2,fd00::53', '--ns-hosts', '10.0.0.3', '--to-ns', '10.1.0.2:5353', '--to-ns', '[fd00::1]:53', '--no-dns-cache')
    expect(a.kind === 'tunnel' && a.args.dns).toEqual({
      enabled: true,
      nsHosts: ['10.0.0.2', 'fd00::53', '10.0.0.3'],
      toNs: ['10.1.0.2:5353', '[fd00::1]:53'],
      domains: [],
      cache: false,
    })
    const b = parse('-r', 'b', '10.0.0.0/8', '--dns-domain', 'corp.internal')
    expect(b.kind === 'tunnel' && b.args.dns.enabled).toBe(true)
    const c = parse('-r', 'b', '10.0.0.0/8', '--dns')
    expect(c.kind === 'tunnel' && c.args.dns).toEqual({ enabled: true, nsHosts: [], toNs: [], domains: [], cache: true })
  })

  it('parses proxies, forwards, background, audit, gateway and exec', () => {
    const r = parse('-r', 'b', '-D', '1080', '-D', '0.0.0.0:1081', '--http-proxy', '8080', '--proxy-auth', 'u:p', '--allow', '192.168.0.0/16',
      '-L', '5432:db:5432', '-R', '8022:127.0.0.1:22', '-N', '-f', '--audit-log', '/tmp/a', '--gateway', '10.0.0.0/8=b2', 'exec', '--', 'psql', '-h', 'x')
    expect(r.kind).toBe('tunnel')
    if (r.kind !== 'tunnel') return
    expect(r.args).toMatchObject({
      subnets: ['10.0.0.0/8=b2'], socks: ['1080', '0.0.0.0:1081'], httpProxy: ['8080'], proxyAuth: 'u:p', allow: ['192.168.0.0/16'],
      localForwards: ['5432:db:5432'], remoteForwards: ['8022:127.0.0.1:22'], background: true, auditLog: '/tmp/a', gateway: true,
      exec: ['psql', '-h', 'x'],
    })
    expect(() => parse('-r', 'b', 'exec', '--')).toThrow(/exec needs a command/)
  })

  it('dispatches status', () => {
    expect(parse('status')).toEqual({ kind: 'status', json: false, all: false })
    expect(parse('status', '--json', '--all')).toEqual({ kind: 'status', json: true, all: true })
  })

  it('dispatches cleanup and demo', () => {
    expect(parse('cleanup')).toEqual({ kind: 'cleanup', verbose: 0 })
    expect(parse('demo', '--keep')).toEqual({ kind: 'demo', keep: true, install: true })
    expect(parse('demo', '--no-install')).toEqual({ kind: 'demo', keep: false, install: false })
  })

  it.each([
    [['--method', 'ipfw', '10.0.0.0/8'], /ipfw/],
    [['-p', '70000', '-r', 'h', '10.0.0.0/8'], /invalid port "70000"/],
    [['--bogus'], /unknown option '--bogus'/],
    [['-r'], /argument missing/],
  ])('turns %j into a USAGE error', (argv, msg) => {
    expect(() => parse(...argv)).toThrow(msg)
    try {
      parse(...argv)
    } catch (e) {
      expect((e as { code: string }).code).toBe('USAGE')
    }
  })

  it('prints help and version and asks to exit 0', () => {
    let out = ''
    const sink = { stdout: (s: string) => (out += s), stderr: () => {} }
    // The version text needs the engines (asynchronous): main prints it.
    expect(parseArgs(['--version'], '1.2.3', sink)).toEqual({ kind: 'version' })
    expect(parseArgs(['-V'], '1.2.3', sink)).toEqual({ kind: 'version' })
    expect(parseArgs(['--help'], '1.2.3', sink)).toEqual({ kind: 'exit', code: 0 })
    for (const opt of ['--dns', '--ns-hosts', '--to-ns', '--dns-domain', '--no-dns-cache', '--remote', '--exclude', '--identity', '--ssh-config', '--jump', '--port', '--ssh-option', '--method', '--listen', '--pidfile', '--verbose', '--quiet', 'cleanup', 'demo']) {
      expect(out).toContain(opt)
    }
  })
})

describe('parseArgs: stay up and stay contained', () => {
  it('exec --only, --fail-closed, --no-net-watch', () => {
    const only = parse('-r', 'b', '10.0.0.0/16', 'exec', '--only', '--', 'job', '--only')
    expect(only).toMatchObject({ kind: 'tunnel', args: { execOnly: true, exec: ['job', '--only'] } })
    expect(parse('-r', 'b', '--fail-closed', '--no-net-watch', '10.0.0.0/16')).toMatchObject({ kind: 'tunnel', args: { failClosed: true, netWatch: false } })
    const plain = parse('-r', 'b', '10.0.0.0/16')
    expect(plain.kind === 'tunnel' && [plain.args.failClosed, plain.args.netWatch, plain.args.execOnly]).toEqual([undefined, undefined, undefined])
    expect(() => parse('-r', 'b', '--only', '10.0.0.0/16')).toThrow(/--only goes with exec/)
  })
})
