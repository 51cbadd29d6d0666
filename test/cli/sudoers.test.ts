import { describe, expect, it } from 'vitest'
import { parseArgs } from '../../src/cli/args'
import { sudoersText, type SudoersInputs } from '../../src/cli/sudoers'
import type { SafetyFs } from '../../src/platform/helper/install-safety'

/** Every path root-owned 0755, except those listed as owned by uid 1000. */
const fsWith = (userOwned: string[] = []): SafetyFs => ({
  lstat: (p) => ({ uid: userOwned.includes(p) ? 1000 : 0, gid: 0, mode: 0o755, isDirectory: !p.endsWith('.js') && !p.endsWith('.json') && !p.endsWith('node'), isSymbolicLink: false }),
  realpath: (p) => p,
  readdir: () => [],
})
const base: SudoersInputs = {
  uid: 1000, username: 'alice', execPath: '/usr/bin/node',
  helperPath: '/usr/lib/node_modules/subnet-tunnel/dist/platform/helper/helper-main.js', version: '1.0.0', sfs: fsWith(),
}

describe('subnet-tunnel sudoers', () => {
  it('parses, with an optional --user', () => {
    expect(parseArgs(['sudoers'], '0')).toEqual({ kind: 'sudoers' })
    expect(parseArgs(['sudoers', '--user', 'bob'], '0')).toEqual({ kind: 'sudoers', user: 'bob' })
  })

  it('prints the drop-in for you, for $SUDO_USER under sudo, or for --user', () => {
    expect(sudoersText(base)).toMatch(/^alice ALL=\(root\) NOPASSWD: \/usr\/bin\/node \S+helper-main\.js$/m)
    expect(sudoersText({ ...base, uid: 0, username: 'root', sudoUser: 'carol' })).toMatch(/^carol ALL=/m)
    expect(sudoersText({ ...base, user: 'bob' })).toMatch(/^bob ALL=/m)
    expect(() => sudoersText({ ...base, uid: 0, username: 'root' })).toThrow(/root needs no sudoers rule/)
  })

  it('refuses an unsafe install: UNSAFE_INSTALL with the path, the reason and what to do', () => {
    const run = () => sudoersText({ ...base, sfs: fsWith(['/usr/lib/node_modules/subnet-tunnel/dist']) })
    expect(run).toThrow(expect.objectContaining({
      code: 'UNSAFE_INSTALL',
      message: expect.stringMatching(/^no sudoers rule for this install: \/usr\/lib\/node_modules\/subnet-tunnel\/dist is owned by uid 1000, not root/),
      hint: expect.stringMatching(/npm pack/),
    }))
  })
})
