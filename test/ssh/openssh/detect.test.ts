/** Finding a usable OpenSSH client: real binaries here, and fakes for versions this machine lacks. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { detectOpenssh, onPath } from '../../../src/ssh/openssh/detect'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

/** A fake `ssh` that prints `text` on stderr for -V, like OpenSSH does. */
function fakeSsh(text: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'st-fake-ssh-'))
  dirs.push(d)
  const p = path.join(d, 'ssh')
  fs.writeFileSync(p, `#!/bin/sh\necho '${text}' >&2\n`, { mode: 0o755 })
  return p
}

describe('detectOpenssh', () => {
  it('the installed client (Debian 12: OpenSSH 9.2) is usable', async () => {
    const d = await detectOpenssh()
    expect(d.ok).toBe(true)
    if (d.ok) {
      expect(d.version.major).toBeGreaterThanOrEqual(7)
      expect(d.versionText).toMatch(/^OpenSSH_/)
      expect(d.setpriv === undefined || path.isAbsolute(d.setpriv)).toBe(true)
    }
  })

  it('refuses a client older than 7.4 (no proxy mode) and a client that is not OpenSSH', async () => {
    expect(await detectOpenssh({ ssh: fakeSsh('OpenSSH_7.2p2 Ubuntu-4, OpenSSL 1.0.2g') })).toEqual({ ok: false, why: 'OpenSSH 7.2 is older than 7.4 (no mux proxy mode)' })
    const d = await detectOpenssh({ ssh: fakeSsh('dropbear v2022.83') })
    expect(d.ok).toBe(false)
    expect(!d.ok && d.why).toMatch(/is not OpenSSH/)
    expect(await detectOpenssh({ ssh: fakeSsh('OpenSSH_7.4p1, OpenSSL 1.0.2k') })).toMatchObject({ ok: true, version: { major: 7, minor: 4 } })
  })

  it('no ssh on PATH, and Windows, say so', async () => {
    expect(await detectOpenssh({ env: { PATH: '/nonexistent' } })).toEqual({ ok: false, why: 'no ssh client on PATH' })
    expect((await detectOpenssh({ platform: 'win32' })).ok).toBe(false)
  })

  it('onPath finds executables only', () => {
    expect(onPath('sh', '/nonexistent:/bin:/usr/bin')).toMatch(/\/sh$/)
    expect(onPath('no-such-program-here', process.env.PATH)).toBeUndefined()
  })
})
