/**
 * Property-based fuzzing of the command line (src/cli/args.ts): any argv — known and unknown
 * options, missing and odd values, subcommands, `--`, `exec` — either parses or throws
 * TunnelError('USAGE'). Nothing else is thrown and the process is never exited (commander's
 * default on errors and --help), which the test enforces by making process.exit throw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { parseArgs, type ParsedCommand } from '../../src/cli/args'
import { anyText, typed } from '../fuzz-helpers'

const OPTIONS = ['-r', '--remote', '-x', '--exclude', '-i', '--identity', '-F', '--ssh-config', '-J', '--jump', '-p', '--port', '-o', '--ssh-option',
  '--method', '--listen', '--pidfile', '--dns', '--ns-hosts', '--to-ns', '--dns-domain', '--no-dns-cache', '-D', '--socks', '--http-proxy',
  '--proxy-auth', '--allow', '-L', '--local-forward', '-R', '--remote-forward', '-N', '-f', '--background', '--audit-log', '--audit-dns',
  '--gateway', '--connections', '--connections-max', '--tun-engine', '-v', '--verbose', '-q', '--quiet', '--version', '-h', '--help', '-vvv', '-qv', '-Nf',
  '--port=22', '--method=nft', '-V', '--force', '--log-file', '--dns-all-families', '--all', '--connections=0', '-p0', '--bogus', '-Z', '--', '-', '--no-dns', '--json', '--keep']
const WORDS = ['cleanup', 'status', 'demo', 'exec', 'help', 'stop', 'stauts', 'completion', 'bash', 'version', '10.0.0.0/8', 'bastion', 'nft', 'nat', 'auto', 'tun', 'pf', 'builtin', 'tun2socks', '0', '1', '64', '65', '65536', '-1', '',
  'a=b', '1080', '127.0.0.1:1080', ' ', 'x,y', '1e3']
const arg = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...OPTIONS) }, { weight: 4, arbitrary: fc.constantFrom(...WORDS) }, { weight: 1, arbitrary: anyText })
const argv = fc.array(arg, { maxLength: 12 })

const realExit = process.exit
beforeAll(() => {
  process.exit = ((code?: number) => {
    throw new Error(`process.exit(${code}) called by the argument parser`)
  }) as typeof process.exit
})
afterAll(() => {
  process.exit = realExit
})

describe('parseArgs under fuzzing', () => {
  it('random argv: a command or USAGE, never another error or an exit', () => {
    let parsed = 0
    fc.assert(
      fc.property(argv, (a) => {
        const out: string[] = []
        const r = typed(() => parseArgs(a, '9.9.9', { stdout: (s) => out.push(s), stderr: (s) => out.push(s) }), ['USAGE'])
        if (!r.ok) {
          expect(r.error.message).not.toBe('')
          return
        }
        parsed++
        check(r.value, a)
      }),
      { numRuns: 1500 },
    )
    expect(parsed).toBeGreaterThan(0)
  })
})

function check(c: ParsedCommand, a: string[]): void {
  switch (c.kind) {
    case 'exit':
      // 0 after --help; 2 after the short usage of a bare `subnet-tunnel`.
      expect(c.code).toBe(a.length === 0 ? 2 : 0)
      return
    case 'version':
      return
    case 'tunnel': {
      const t = c.args
      expect(['auto', 'nat', 'nft', 'tun', 'pf']).toContain(t.method)
      if (t.port !== undefined) expect(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535).toBe(true)
      expect(t.connections >= 1 && t.connections <= 64).toBe(true)
      expect(t.connectionsMax >= t.connections && t.connectionsMax <= 64).toBe(true)
      expect(t.verbose).toBeGreaterThanOrEqual(0)
      if (t.exec !== undefined) expect(t.exec.length).toBeGreaterThan(0)
      for (const s of t.subnets) expect(a).toContain(s)
      return
    }
    default:
      expect(['cleanup', 'status', 'demo', 'stop', 'completion', 'sudoers']).toContain(c.kind)
  }
}
