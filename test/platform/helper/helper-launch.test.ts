import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { helperLaunchArgv, helperScriptPath, SUDO_PROMPT } from '../../../src/platform/helper/helper-launch'
import { sudoersRule } from '../../../src/platform/helper/sudoers'

const base = { execPath: '/usr/bin/node', helperPath: '/opt/st/dist/platform/helper/helper-main.js' }

describe('helperLaunchArgv', () => {
  it('root runs the helper directly with the same node', () => {
    expect(helperLaunchArgv({ ...base, uid: 0, tty: true })).toEqual({
      command: '/usr/bin/node', args: ['/opt/st/dist/platform/helper/helper-main.js'], viaSudo: false, interactive: false,
    })
  })

  it('a user with a terminal goes through sudo, which may prompt', () => {
    expect(helperLaunchArgv({ ...base, uid: 1000, tty: true })).toEqual({
      command: 'sudo', args: ['-p', SUDO_PROMPT, '--', '/usr/bin/node', '/opt/st/dist/platform/helper/helper-main.js'], viaSudo: true, interactive: true,
    })
  })

  it('without a terminal sudo must not prompt: sudo -n', () => {
    expect(helperLaunchArgv({ ...base, uid: 1000, tty: false })).toEqual({
      command: 'sudo', args: ['-n', '--', '/usr/bin/node', '/opt/st/dist/platform/helper/helper-main.js'], viaSudo: true, interactive: false,
    })
  })

  it('finds helper-main.js next to itself or in dist/, and builds a sudoers line', () => {
    expect(helperScriptPath('/nonexistent/src/platform')).toBe('/nonexistent/src/platform/helper-main.js')
    expect(sudoersRule('alice', base)).toBe('alice ALL=(root) NOPASSWD: /usr/bin/node /opt/st/dist/platform/helper/helper-main.js')
  })
})

describe('helperScriptPath from the CLI bundle (dist/cli/main.bundle.js)', () => {
  it('is the same dist/platform/helper/helper-main.js the sudoers rule names, not a path beside the bundle', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'st-helper-path-'))
    try {
      const helper = path.join(root, 'dist', 'platform', 'helper', 'helper-main.js')
      mkdirSync(path.dirname(helper), { recursive: true })
      mkdirSync(path.join(root, 'dist', 'cli'))
      writeFileSync(helper, '')
      // Inside the bundle, helper-launch's own directory (__dirname) is dist/cli.
      expect(helperScriptPath(path.join(root, 'dist', 'cli'))).toBe(helper)
      // Unbundled, as before: next to helper-launch.js.
      expect(helperScriptPath(path.dirname(helper))).toBe(helper)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})
