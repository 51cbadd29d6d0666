/** The OpenSSH engine factory: a private socket directory, and the user's master for the first connection only. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/observe/logger'
import { makeControlDir, opensshEngine } from '../../../src/ssh/openssh/engine'
import type { OpensshSession } from '../../../src/ssh/openssh/session'
import { hostCfg } from '../helpers'

describe('opensshEngine', () => {
  it('makes a fresh 0700 directory of ours with an unguessable name, and removes it on close', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'st-eng-'))
    try {
      const e = opensshEngine({ ssh: '/usr/bin/ssh', version: { major: 9, minor: 2 }, interactive: () => false, log: silentLogger, runtimeDir: base })
      const remote = { name: 'b', request: { destination: 'b', identities: [], options: [] }, target: hostCfg({ port: 22, controlPath: '/home/u/.ssh/cm' }), hops: [] }
      const first = e.connection(remote) as unknown as OpensshSession
      const second = e.connection(remote) as unknown as OpensshSession
      const dir = first.init.controlDir
      expect(path.dirname(dir)).toBe(base)
      expect(path.basename(dir)).toMatch(/^subnet-tunnel-[A-Za-z0-9]{6}$/)
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700)
      // The user's ControlMaster carries the first connection only: the pool grows with masters of ours.
      expect(first.init.userControlPath).toBe('/home/u/.ssh/cm')
      expect(second.init.userControlPath).toBeUndefined()
      await e.close!()
      expect(fs.existsSync(dir)).toBe(false)
    } finally {
      fs.rmSync(base, { recursive: true, force: true })
    }
  })

  it('falls back to the temp directory when the preferred one cannot be used', () => {
    const d = makeControlDir('/nonexistent/dir')
    try {
      expect(fs.statSync(d).isDirectory()).toBe(true)
    } finally {
      fs.rmSync(d, { recursive: true, force: true })
    }
  })
})
