import { describe, expect, it } from 'vitest'
import { parseArgs, SHORT_USAGE } from '../../src/cli/args'
import { editDistance, nearCommand } from '../../src/cli/argv-checks'
import { TunnelError } from '../../src/errors'

const quiet = { stdout: () => {}, stderr: () => {} }
const NO_CONFIG = '/nonexistent/subnet-tunnel/config.toml'
const parse = (...a: string[]) => parseArgs(a, '1.2.3', quiet, {}, NO_CONFIG)

/** The USAGE error parse throws, as "message | hint". */
function usage(...a: string[]): string {
  try {
    parse(...a)
  } catch (e) {
    expect(e).toBeInstanceOf(TunnelError)
    expect((e as TunnelError).code).toBe('USAGE')
    return `${(e as TunnelError).message} | ${(e as TunnelError).hint}`
  }
  throw new Error(`parsed: ${a.join(' ')}`)
}

describe('argv checks (mistakes a first-time user made)', () => {
  it('suggests the subcommand for a typo instead of reading it as a host name', () => {
    expect(usage('stauts')).toMatch(/unknown command "stauts" \| did you mean `subnet-tunnel status`\?/)
    expect(usage('stpo')).toMatch(/did you mean `subnet-tunnel stop`/)
    expect(usage('cleanpu')).toMatch(/did you mean `subnet-tunnel cleanup`/)
    expect(usage('hlep')).toMatch(/did you mean `subnet-tunnel help`/)
    expect(usage('version')).toBe('unknown command "version" | subnet-tunnel --version')
    // A host name with a dot, a CIDR, or a word far from every command is still a subnet.
    expect(parse('-r', 'b', 'stats.example.com').kind).toBe('tunnel')
    expect(parse('-r', 'b', 'database').kind).toBe('tunnel')
  })

  it('keeps commander’s "did you mean" for options, as the hint', () => {
    expect(usage('-r', 'b', '10.0.0.0/8', '--metod', 'nft')).toMatch(/unknown option '--metod' \| did you mean --method\?/)
  })

  it('asks for -- after exec and for exec before --', () => {
    expect(usage('-r', 'b', '10.0.0.0/8', 'exec', 'psql', '-h', 'db')).toBe(
      "exec needs -- before the command | … exec -- psql -h db (without --, the command's own options would be read as subnet-tunnel's)",
    )
    expect(usage('-r', 'b', '10.0.0.0/8', '--', 'psql')).toMatch(/^-- without exec \| .* exec -- psql$/)
    expect(parse('-r', 'b', '10.0.0.0/8', 'exec', '--', 'psql', '-h', 'db')).toMatchObject({ kind: 'tunnel', args: { exec: ['psql', '-h', 'db'] } })
  })

  it('names the option whose value is missing when the next word is an option', () => {
    expect(usage('-D', '-r', 'bastion')).toBe('-D needs a value, but the next argument is the option -r | give the value right after it: subnet-tunnel -D 1080 …')
    expect(usage('-r', '--dns', '10.0.0.0/8')).toMatch(/^-r needs a value, but the next argument is the option --dns \| .*-r user@bastion/)
    // A password may start with a dash.
    expect(parse('-r', 'b', '-D', '1080', '--proxy-auth', '-u:p').kind).toBe('tunnel')
  })

  it('asks for one subnet per argument and one -x per network', () => {
    expect(usage('-r', 'b', '10.0.0.0/8,192.168.1.0/24')).toBe('"10.0.0.0/8,192.168.1.0/24": one subnet per argument | separate subnets with spaces: 10.0.0.0/8 192.168.1.0/24')
    expect(usage('-r', 'b', '10.0.0.0/8', '-x', '10.1.0.0/16,10.2.0.0/16')).toBe(
      '-x "10.1.0.0/16,10.2.0.0/16": one network per -x | repeat the option: -x 10.1.0.0/16 -x 10.2.0.0/16',
    )
  })

  it('prints a short usage for a bare subnet-tunnel (exit 2) and help with defaults said once', () => {
    let err = ''
    expect(parseArgs([], '1.2.3', { stdout: () => {}, stderr: (s) => (err += s) })).toEqual({ kind: 'exit', code: 2 })
    expect(err).toBe(SHORT_USAGE)
    let out = ''
    expect(parseArgs(['--help'], '1.2.3', { stdout: (s) => (out += s), stderr: () => {} })).toEqual({ kind: 'exit', code: 0 })
    expect(out).not.toContain('(default: [])')
    for (const line of out.split('\n')) expect(line.match(/default/g)?.length ?? 0, line).toBeLessThanOrEqual(1)
    expect(out.replace(/\s+/g, ' ')).toContain('--connections <n> SSH connections per bastion to open at start (default: 1) --connections-max')
  })

  it('edit distance and nearCommand', () => {
    expect(editDistance('status', 'stauts')).toBe(2)
    expect(nearCommand('stauts', ['status', 'stop'])).toBe('status')
    expect(nearCommand('db', ['demo', 'up'])).toBeUndefined()
    expect(nearCommand('status', ['status'])).toBeUndefined()
    expect(nearCommand('10.0.0.1', ['status'])).toBeUndefined()
  })
})
