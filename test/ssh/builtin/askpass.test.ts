import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { askpassDecision, runAskpass } from '../../../src/ssh/builtin/askpass'
import { tmpDir } from '../helpers'

describe('SSH_ASKPASS and SSH_ASKPASS_REQUIRE, as OpenSSH read_passphrase()', () => {
  const dir = tmpDir()
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  const none = (): boolean => false

  it('used with a display (only without a terminal), always with force, never with never', () => {
    expect(askpassDecision({ SSH_ASKPASS: '/x' }, none)).toEqual({ overTty: false })
    expect(askpassDecision({ SSH_ASKPASS: '/x', DISPLAY: ':0' }, none)).toEqual({ program: '/x', overTty: false })
    expect(askpassDecision({ SSH_ASKPASS: '/x', WAYLAND_DISPLAY: 'w' }, none)).toEqual({ program: '/x', overTty: false })
    expect(askpassDecision({ SSH_ASKPASS: '/x', SSH_ASKPASS_REQUIRE: 'force' }, none)).toEqual({ program: '/x', overTty: true })
    expect(askpassDecision({ SSH_ASKPASS: '/x', SSH_ASKPASS_REQUIRE: 'prefer', DISPLAY: ':0' }, none)).toEqual({ program: '/x', overTty: true })
    expect(askpassDecision({ SSH_ASKPASS: '/x', SSH_ASKPASS_REQUIRE: 'never', DISPLAY: ':0' }, none)).toEqual({ overTty: false })
    // Unset SSH_ASKPASS: the distribution's ssh-askpass, when installed.
    expect(askpassDecision({ DISPLAY: ':0' }, (p) => p === '/usr/lib/ssh/ssh-askpass')).toEqual({ program: '/usr/lib/ssh/ssh-askpass', overTty: false })
  })

  it('the prompt is the argument, the first output line the answer; a failing program is no answer', async () => {
    const ok = path.join(dir, 'ok')
    fs.writeFileSync(ok, '#!/bin/sh\nprintf "%s|answer\\nsecond line\\n" "$1"\n', { mode: 0o700 })
    expect(await runAskpass(ok, 'Password: ', process.env)).toBe('Password: |answer')
    const bad = path.join(dir, 'bad')
    fs.writeFileSync(bad, '#!/bin/sh\nexit 1\n', { mode: 0o700 })
    await expect(runAskpass(bad, 'q', process.env)).rejects.toMatchObject({ code: 'SSH_AUTH', message: expect.stringMatching(/exited with code 1/) })
  })

  it('an abort (the connection closed) ends the program and rejects', async () => {
    const slow = path.join(dir, 'slow')
    fs.writeFileSync(slow, '#!/bin/sh\nexec sleep 30\n', { mode: 0o700 })
    const ac = new AbortController()
    const p = runAskpass(slow, 'q', process.env, ac.signal)
    setTimeout(() => ac.abort(), 50)
    await expect(p).rejects.toMatchObject({ message: expect.stringMatching(/cancelled/) })
  })
})
