import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { resolveSshConfig, parseSshGOutput, type ResolveSshConfigOptions } from '../../src/config/ssh-config'
import type { SshRequest } from '../../src/config/ssh-config-types'
import { isTunnelError } from '../../src/errors'
import { memoryLogger } from '../../src/observe/logger'

let dir: string
let home: string
let cfg: string
let env: NodeJS.ProcessEnv

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-sshcfg-'))
  home = join(dir, 'home')
  mkdirSync(join(home, '.ssh'), { recursive: true })
  writeFileSync(join(dir, 'inc.conf'), 'Host included\n  HostName inc.example.com\n  ServerAliveInterval 30\n')
  cfg = join(dir, 'config')
  writeFileSync(
    cfg,
    [
      `Include ${join(dir, 'inc.conf')}`,
      'Host alias1',
      '  HostName real.example.com',
      '  User bob',
      '  Port 2200',
      '  IdentityFile ~/.ssh/%h_%r_key',
      '  IdentityFile ${KEYDIR}/second',
      `  UserKnownHostsFile ${dir}/kh_%h ${dir}/kh2`,
      '  ProxyCommand nc -X connect %h %p %r %n %%',
      '  StrictHostKeyChecking accept-new',
      'Host viajump',
      '  ProxyJump a@j1:2222,j2',
      '  IdentityAgent none',
      '  HostKeyAlias jumpalias',
      'Host agentvar',
      '  IdentityAgent SSH_AUTH_SOCK',
      'Host agentpath',
      '  IdentityAgent ~/agent.sock',
      'Match originalhost matched',
      '  User matcheduser',
      '  ConnectTimeout 7',
      '',
    ].join('\n'),
  )
  env = { ...process.env, KEYDIR: '/keys', SSH_AUTH_SOCK: '/run/agent.sock' }
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const req = (destination: string, more: Partial<SshRequest> = {}): SshRequest => ({
  destination,
  configFile: cfg,
  identities: [],
  options: [],
  ...more,
})

// Both resolvers must give the same answers for what the parser supports.
const modes: [string, ResolveSshConfigOptions][] = [
  ['ssh -G', {}],
  ['parser fallback', { sshBinary: '/nonexistent/ssh' }],
]

describe.each(modes)('resolveSshConfig via %s', (_name, mode) => {
  const resolve = (r: SshRequest) => resolveSshConfig(r, { ...mode, env, home })

  it('applies a Host alias with HostName, User, Port, IdentityFile, known hosts and ProxyCommand', async () => {
    const c = await resolve(req('alias1'))
    expect(c).toMatchObject({
      alias: 'alias1',
      hostName: 'real.example.com',
      user: 'bob',
      port: 2200,
      identityFiles: [`${home}/.ssh/real.example.com_bob_key`, '/keys/second'],
      userKnownHostsFiles: [`${dir}/kh_real.example.com`, `${dir}/kh2`],
      proxyCommand: 'nc -X connect real.example.com 2200 bob alias1 %',
      proxyJump: [],
      strictHostKeyChecking: 'accept-new',
      serverAliveInterval: 15,
      serverAliveCountMax: 3,
      identityAgent: '/run/agent.sock',
    })
  })

  it('lets the destination user and port win over the config', async () => {
    const c = await resolve(req('carol@alias1:2022', { port: 9 }))
    expect([c.user, c.port, c.hostName]).toEqual(['carol', 2022, 'real.example.com'])
    const p = await resolve(req('alias1', { port: 9 }))
    expect(p.port).toBe(9)
  })

  it('passes -o overrides, including an explicit ServerAliveInterval=0', async () => {
    const c = await resolve(
      req('alias1', { options: ['User=dave', 'ServerAliveInterval=0', 'serveralivecountmax 5', 'StrictHostKeyChecking=yes'] }),
    )
    expect([c.user, c.serverAliveInterval, c.serverAliveCountMax, c.strictHostKeyChecking]).toEqual(['dave', 0, 5, 'yes'])
  })

  it('reads ProxyJump, IdentityAgent none and HostKeyAlias; -J wins', async () => {
    const c = await resolve(req('viajump'))
    expect(c.proxyJump).toEqual(['a@j1:2222', 'j2'])
    expect(c.identityAgent).toBeUndefined()
    expect(c.hostKeyAlias).toBe('jumpalias')
    const j = await resolve(req('plainhost', { jump: 'x@hop1,hop2:2200' }))
    expect(j.proxyJump).toEqual(['x@hop1', 'hop2:2200'])
  })

  it('resolves IdentityAgent SSH_AUTH_SOCK and paths', async () => {
    expect((await resolve(req('agentvar'))).identityAgent).toBe('/run/agent.sock')
    // ssh -G expands this ~ itself, from the passwd entry (as ssh would), not from our `home`.
    const expectedHome = mode.sshBinary ? home : userInfo().homedir
    expect((await resolve(req('agentpath'))).identityAgent).toBe(`${expectedHome}/agent.sock`)
  })

  it('refuses shell syntax in host and user names before `ssh -G` (Match exec) or a ProxyCommand sees them', async () => {
    const marker = join(dir, `pwned-${_name.replace(/\W/g, '')}`)
    const evil = join(dir, 'evil.conf')
    // Both run %h / %r through /bin/sh: ssh -G runs Match exec, and the ProxyCommand runs at connect.
    writeFileSync(evil, 'Match exec "true %h %r"\n  Port 2222\nHost *\n  ProxyCommand printf %h%r\n')
    const touch = `$(touch ${marker})`
    const bad: Partial<SshRequest>[] = [
      {},
      { destination: `u${touch}@h` },
      { destination: `u@h\`touch ${marker}\`` },
      { jump: `ok,j${touch}` },
      { options: [`User=u${touch}`] },
      { options: [`ProxyJump j;touch ${marker}`] },
      { destination: '-oProxyCommand=x' },
    ]
    for (const more of bad) {
      const err = await resolve(req(`h${touch}`, { configFile: evil, ...more })).then(() => undefined, (e: unknown) => e)
      expect(isTunnelError(err, 'USAGE'), `${JSON.stringify(more)}: ${String(err)}`).toBe(true)
    }
    expect(existsSync(marker)).toBe(false)
    // Names OpenSSH accepts still pass: DOMAIN\\user, a zone index, a glob-looking alias.
    const ok = await resolve(req('CORP\\alice@fe80::1%eth0', { configFile: evil }))
    expect([ok.user, ok.hostName]).toEqual(['CORP\\alice', 'fe80::1%eth0'])
  })

  it('evaluates Match blocks', async () => {
    const c = await resolve(req('matched'))
    expect([c.user, c.connectTimeout]).toEqual(['matcheduser', 7])
  })

  it('puts -i identities first', async () => {
    const key = join(dir, 'id_given')
    writeFileSync(key, 'x')
    const c = await resolve(req('alias1', { identities: [key] }))
    expect(c.identityFiles[0]).toBe(key)
  })

  it('uses OpenSSH defaults for an unconfigured host', async () => {
    const c = await resolve(req('[2001:db8::1]:2222'))
    expect(c).toMatchObject({ hostName: '2001:db8::1', port: 2222, user: userInfo().username, strictHostKeyChecking: 'ask' })
    expect(c.identityFiles).toContain(`${home}/.ssh/id_ed25519`)
    expect(c.identityFiles).toContain(`${home}/.ssh/id_rsa`)
    expect(c.globalKnownHostsFiles).toEqual(['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'])
    expect(c.serverAliveInterval).toBe(15)
  })

  it('rejects unknown -o options with SSH_CONFIG and a man page hint', async () => {
    const err = await resolve(req('alias1', { options: ['NoSuchOption=1'] })).catch((e) => e)
    expect(isTunnelError(err, 'SSH_CONFIG')).toBe(true)
    expect(err.message.toLowerCase()).toContain('nosuchoption')
    expect(err.hint).toMatch(/man ssh_config/)
  })

  it('rejects a bad StrictHostKeyChecking value', async () => {
    const err = await resolve(req('alias1', { options: ['StrictHostKeyChecking=maybe'] })).catch((e) => e)
    expect(isTunnelError(err, 'SSH_CONFIG')).toBe(true)
  })

  it('rejects a missing -F file', async () => {
    const err = await resolve(req('alias1', { configFile: join(dir, 'missing') })).catch((e) => e)
    expect(isTunnelError(err, 'SSH_CONFIG')).toBe(true)
  })
})

describe('ssh -G only', () => {
  it('follows Include (the parser fallback does not)', async () => {
    const c = await resolveSshConfig(req('included'), { env, home })
    expect([c.hostName, c.serverAliveInterval]).toEqual(['inc.example.com', 30])
    const f = await resolveSshConfig(req('included'), { env, home, sshBinary: '/nonexistent/ssh' })
    expect(f.hostName).toBe('included')
  })

  it("logs ssh's warnings, such as an -i file that does not exist", async () => {
    const log = memoryLogger()
    await resolveSshConfig(req('alias1', { identities: [join(dir, 'no-such-key')] }), { env, home, log })
    expect(log.lines.join('\n')).toMatch(/no-such-key/)
  })

  it('parses multi-valued and list lines', () => {
    const raw = parseSshGOutput('identityfile ~/a\nidentityfile ~/b\nuserknownhostsfile /x /y\nproxycommand nc %h %p\n')
    expect(raw.get('identityfile')).toEqual(['~/a', '~/b'])
    expect(raw.get('userknownhostsfile')).toEqual(['/x', '/y'])
    expect(raw.get('proxycommand')).toEqual(['nc %h %p'])
  })
})

describe('parser fallback without -F', () => {
  it("reads ~/.ssh/config from the given home", async () => {
    writeFileSync(join(home, '.ssh', 'config'), 'Host homealias\n  HostName from-home.example\n  User homeuser\n')
    const c = await resolveSshConfig(
      { destination: 'homealias', identities: [], options: [] },
      { env, home, sshBinary: '/nonexistent/ssh' },
    )
    expect([c.hostName, c.user]).toEqual(['from-home.example', 'homeuser'])
    expect(c.userKnownHostsFiles).toEqual([`${home}/.ssh/known_hosts`, `${home}/.ssh/known_hosts2`])
  })
})
