import * as fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseArgs } from '../../src/cli/args'
import { configPath, expandArgFiles, profileNames } from '../../src/cli/profile-args'
import { TunnelError } from '../../src/errors'

const quiet = { stdout: () => {}, stderr: () => {} }
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-profiles-'))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

function config(text: string, mode = 0o600): string {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.toml`)
  fs.writeFileSync(f, text, { mode })
  fs.chmodSync(f, mode)
  return f
}

const WORK = `
# my tunnels
[work]
remote = "admin@bastion.example.com"
subnets = ["10.0.0.0/16", "fd00:10::/64"]
dns = true
dns-domain = ["corp.internal"]
socks = 1080
exclude = "10.0.99.0/24"
method = "nft"
dns-cache = false
verbose = 1

[lab]
remote = "lab"
subnets = "192.168.50.0/24"
`

function usage(file: string, ...a: string[]): string {
  try {
    parseArgs(a, '1.2.3', quiet, {}, file)
  } catch (e) {
    expect((e as TunnelError).code).toBe('USAGE')
    return `${(e as TunnelError).message} | ${(e as TunnelError).hint}`
  }
  throw new Error('parsed')
}

describe('profiles on the command line', () => {
  it('`up NAME` and `-c NAME` start the profile; the command line adds and overrides', () => {
    const f = config(WORK)
    const up = parseArgs(['up', 'work'], '1.2.3', quiet, {}, f)
    expect(up).toMatchObject({
      kind: 'tunnel',
      args: {
        profile: 'work',
        remote: 'admin@bastion.example.com',
        subnets: ['10.0.0.0/16', 'fd00:10::/64'],
        exclude: ['10.0.99.0/24'],
        socks: ['1080'],
        method: 'nft',
        verbose: 1,
        dns: { enabled: true, domains: ['corp.internal'], cache: false },
      },
    })
    const c = parseArgs(['-c', 'work', '-r', 'other', '--method', 'nat', '-x', '10.0.98.0/24', '10.9.0.0/16', '-v'], '1.2.3', quiet, {}, f)
    expect(c).toMatchObject({
      kind: 'tunnel',
      args: { profile: 'work', remote: 'other', method: 'nat', exclude: ['10.0.99.0/24', '10.0.98.0/24'], subnets: ['10.0.0.0/16', 'fd00:10::/64', '10.9.0.0/16'], verbose: 2 },
    })
    expect(parseArgs(['--profile=lab'], '1.2.3', quiet, {}, f)).toMatchObject({ kind: 'tunnel', args: { profile: 'lab', remote: 'lab', subnets: ['192.168.50.0/24'] } })
    expect(profileNames(f)).toEqual(['work', 'lab'])
  })

  it('unknown keys, bad values and missing profiles get typed errors that name the place', () => {
    const f = config(WORK)
    expect(usage(f, 'up', 'wrok')).toBe(`no profile "wrok" in ${f} | did you mean work?`)
    expect(usage(f, 'up')).toBe(`up needs a profile name | profiles in ${f}: work, lab`)
    expect(usage(config('[w]\nremote = "b"\ndns-domian = ["x"]\n'), 'up', 'w')).toMatch(/: \[w\]: unknown key "dns-domian" \| did you mean dns-domain\?/)
    expect(usage(config('[w]\nremote = "b"\ndns = "yes"\n'), 'up', 'w')).toMatch(/\[w\]: dns: expected true or false, got "yes"/)
    expect(usage(config('[w]\nremote = ["a", "b"]\n'), 'up', 'w')).toMatch(/\[w\]: remote: takes one value, got a list/)
    expect(usage(config('remote = "b"\n[w]\n'), 'up', 'w')).toMatch(/"remote" is outside a profile/)
    expect(usage(config('[w]\nremote = \n'), 'up', 'w')).toMatch(/not valid TOML \(line 2, column \d+\)/)
    // A value the command line would refuse is refused the same way (the same parser runs).
    expect(usage(config('[w]\nremote = "b"\nmethod = "ipfw"\n'), 'up', 'w')).toMatch(/--method.*ipfw/)
    expect(usage(path.join(dir, 'none.toml'), '-c', 'w')).toMatch(/^no config file .*none\.toml \(for profile "w"\)/)
    expect(usage(config(WORK), 'up', 'work', '-c', 'lab')).toMatch(/^one profile at a time/)
    expect(usage(config(WORK), '-vc', 'work')).toBe('-c work inside a group of flags | give it on its own: -c work (or: subnet-tunnel up work)')
  })

  it('refuses a config file others can write (it can run commands through ProxyCommand)', () => {
    expect(usage(config(WORK, 0o666), 'up', 'work')).toMatch(/writable by everyone \| chmod go-w/)
    expect(usage(config(WORK, 0o620), 'up', 'work')).toMatch(/writable by its group/)
  })

  it('expands @FILE argument files (comments, several words a line, nesting bounded)', () => {
    const inner = path.join(dir, 'inner.args')
    fs.writeFileSync(inner, '-x 10.0.9.0/24\n')
    const outer = path.join(dir, 'outer.args')
    fs.writeFileSync(outer, `# the lab\n-r lab\n\n10.0.0.0/16 @${inner}\n`)
    expect(parseArgs([`@${outer}`, '-D', '1080'], '1.2.3', quiet, {}, path.join(dir, 'none.toml'))).toMatchObject({
      kind: 'tunnel',
      args: { remote: 'lab', subnets: ['10.0.0.0/16'], exclude: ['10.0.9.0/24'], socks: ['1080'] },
    })
    const loop = path.join(dir, 'loop.args')
    fs.writeFileSync(loop, `@${loop}\n`)
    expect(() => expandArgFiles([`@${loop}`])).toThrow(/nested more than 4 deep/)
    expect(() => expandArgFiles(['@/nonexistent/args'])).toThrow(/cannot read the argument file/)
    // After exec --, an @word belongs to the command.
    expect(expandArgFiles(['-r', 'b', 'exec', '--', 'curl', '@data'])).toEqual(['-r', 'b', 'exec', '--', 'curl', '@data'])
  })

  it('finds the config file through $SUBNET_TUNNEL_CONFIG, $XDG_CONFIG_HOME or ~/.config', () => {
    expect(configPath({ SUBNET_TUNNEL_CONFIG: '/etc/st.toml', HOME: '/h' })).toBe('/etc/st.toml')
    expect(configPath({ XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/x/subnet-tunnel/config.toml')
    expect(configPath({ HOME: '/h' })).toBe('/h/.config/subnet-tunnel/config.toml')
  })
})
