/**
 * --ssh-engine at plan time: auto takes OpenSSH when a usable client exists and says why, else the
 * built-in engine; an explicit `openssh` without one is a usage error (exit 2) before anything starts.
 */
import { describe, expect, it } from 'vitest'
import { exitCodeFor } from '../../src/cli/report-error'
import { TunnelError } from '../../src/errors'
import type { OpensshDetection } from '../../src/ssh/openssh/detect'
import { planSshEngine } from '../../src/tunnel/plan'

const found: OpensshDetection = { ok: true, ssh: '/usr/bin/ssh', version: { major: 9, minor: 2 }, versionText: 'OpenSSH_9.2p1', setpriv: '/usr/bin/setpriv' }
const missing: OpensshDetection = { ok: false, why: 'no ssh client on PATH' }
const sys = (d: OpensshDetection) => ({ detectOpenssh: async () => d })

describe('planSshEngine', () => {
  it('auto: OpenSSH when found, with its version and path in the reason', async () => {
    const e = await planSshEngine('auto', sys(found))
    expect(e).toMatchObject({ name: 'openssh', ssh: '/usr/bin/ssh', version: { major: 9, minor: 2 }, setpriv: '/usr/bin/setpriv' })
    expect(e.why).toBe('auto: OpenSSH_9.2p1 at /usr/bin/ssh')
  })

  it('auto: the built-in engine when there is no usable OpenSSH, saying why', async () => {
    expect(await planSshEngine('auto', sys(missing))).toEqual({ name: 'builtin', why: 'auto: no ssh client on PATH, so the built-in engine' })
  })

  it('builtin never looks for ssh', async () => {
    let asked = false
    const e = await planSshEngine('builtin', { detectOpenssh: async () => ((asked = true), found) })
    expect(e.name).toBe('builtin')
    expect(asked).toBe(false)
  })

  it('openssh without a usable client: USAGE, exit 2, with the reason and the alternative', async () => {
    const e = await planSshEngine('openssh', sys({ ok: false, why: 'OpenSSH 7.2 is older than 7.4 (no mux proxy mode)' })).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(TunnelError)
    expect(e).toMatchObject({ code: 'USAGE', message: '--ssh-engine openssh: OpenSSH 7.2 is older than 7.4 (no mux proxy mode)' })
    expect((e as TunnelError).hint).toMatch(/--ssh-engine builtin/)
    expect(exitCodeFor(e as TunnelError)).toBe(2)
  })
})
