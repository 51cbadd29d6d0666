import { describe, expect, it } from 'vitest'
import { availableEngines } from '../../src/tunnel/engines'

describe('availableEngines (for --version)', () => {
  it('openssh with its version when its client is usable, else why not; builtin always, with ssh2’s version', async () => {
    const ok = await availableEngines(async () => ({ ok: true, ssh: '/usr/bin/ssh', version: { major: 9, minor: 2 } as never, versionText: 'OpenSSH_9.2p1' }))
    expect(ok).toEqual([
      { name: 'openssh', detail: 'OpenSSH_9.2p1', usable: true },
      { name: 'builtin', detail: expect.stringMatching(/^ssh2 \d+\.\d+\.\d+$/), usable: true },
    ])
    const none = await availableEngines(async () => ({ ok: false, why: 'no ssh client on PATH' }))
    expect(none[0]).toEqual({ name: 'openssh', detail: 'no ssh client on PATH', usable: false })
  })
})
