// SSH secrets (key passphrases, passwords, keyboard-interactive answers) never reach a log line
// or an error, even at debug level, where ssh2's own protocol trace is forwarded.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatError } from '../../../src/cli/report-error'
import { toTunnelError } from '../../../src/errors'
import { memoryLogger } from '../../../src/observe/logger'
import { connectChain } from '../../../src/ssh/builtin/connect'
import { fakeVerifier, genKey, hostCfg, scriptedPrompter, tmpDir, TestServer, type KeyPair } from '../helpers'

const PASSWORD = 'PwSsh-4Kq9-SECRET'
const WRONG_PASSWORD = 'PwSsh-4Kq8-ALMOST'
const KBD_ANSWER = 'Kbd-77310-SECRET'
const PASSPHRASE = 'Pass-Phr4se-SECRET'
const WRONG_PASSPHRASE = 'Pass-Phr4se-ALMOST'
const ALL = [PASSWORD, WRONG_PASSWORD, KBD_ANSWER, PASSPHRASE, WRONG_PASSPHRASE]

function expectNoSecret(what: string, text: string): void {
  for (const s of ALL) {
    expect(text.includes(s), `${what} contains ${s}:\n${text}`).toBe(false)
    expect(text.includes(Buffer.from(s).toString('base64')), `${what} contains base64 of ${s}`).toBe(false)
    expect(text.includes(Buffer.from(s).toString('hex')), `${what} contains hex of ${s}`).toBe(false)
  }
}

describe('SSH authentication secrets stay out of logs and errors (debug level, ssh2 trace on)', () => {
  let hostKey: KeyPair
  let userKey: KeyPair
  let pwSrv: TestServer
  let kbdSrv: TestServer
  let keySrv: TestServer
  let dir: string
  let encKey: string

  beforeAll(async () => {
    hostKey = genKey()
    userKey = genKey()
    pwSrv = new TestServer({ hostKey, password: PASSWORD })
    kbdSrv = new TestServer({ hostKey, kbdAnswer: KBD_ANSWER })
    keySrv = new TestServer({ hostKey, userKey })
    await Promise.all([pwSrv.start(), kbdSrv.start(), keySrv.start()])
    dir = tmpDir()
    // The accepted key, encrypted with ssh-keygen as a user would have it.
    encKey = path.join(dir, 'id_enc')
    fs.writeFileSync(encKey, userKey.private, { mode: 0o600 })
    execFileSync('ssh-keygen', ['-q', '-p', '-N', PASSPHRASE, '-P', '', '-f', encKey])
  })
  afterAll(async () => {
    await Promise.all([pwSrv.stop(), kbdSrv.stop(), keySrv.stop()])
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const connect = async (srv: TestServer, answers: string[], over: Parameters<typeof hostCfg>[0]) => {
    const log = memoryLogger('debug')
    const prompter = scriptedPrompter(answers)
    let error: unknown
    try {
      const c = await connectChain(hostCfg(over), [], { makeVerifier: () => fakeVerifier(hostKey.blob), prompter, log })
      c.end()
    } catch (e) {
      error = e
    }
    return { log: log.lines.join('\n'), error, asked: prompter.asked }
  }

  it('password: the right one', async () => {
    const r = await connect(pwSrv, [PASSWORD], { port: pwSrv.port, kbdInteractiveAuthentication: false })
    expect(r.error).toBeUndefined()
    expect(r.asked).toHaveLength(1)
    // ssh2's trace is really there: the requests that carried the secret were logged (without it).
    expect(r.log).toMatch(/Outbound: Sending USERAUTH_REQUEST \(password\)/)
    expectNoSecret('log', r.log)
  })

  it('password: every try wrong → SSH_AUTH whose message, hint and causes hold no secret', async () => {
    const r = await connect(pwSrv, [WRONG_PASSWORD, WRONG_PASSWORD, WRONG_PASSWORD], { port: pwSrv.port, kbdInteractiveAuthentication: false })
    const e = toTunnelError(r.error)
    expect(e.code).toBe('SSH_AUTH')
    expect(r.log).toMatch(/USERAUTH_REQUEST \(password\)/)
    expectNoSecret('log', r.log)
    expectNoSecret('error', formatError(e, 3))
  })

  it('keyboard-interactive: the answer is sent, never logged', async () => {
    const r = await connect(kbdSrv, [KBD_ANSWER], { port: kbdSrv.port, passwordAuthentication: false })
    expect(r.error).toBeUndefined()
    expect(r.log).toMatch(/Outbound: Sending USERAUTH_INFO_RESPONSE/)
    expectNoSecret('log', r.log)
  })

  it('keyboard-interactive: a wrong answer → SSH_AUTH without it', async () => {
    const r = await connect(kbdSrv, [WRONG_PASSWORD], { port: kbdSrv.port, passwordAuthentication: false })
    expect(toTunnelError(r.error).code).toBe('SSH_AUTH')
    expectNoSecret('log', r.log)
    expectNoSecret('error', formatError(r.error, 3))
  })

  it('encrypted key: a wrong then the right passphrase', async () => {
    const r = await connect(keySrv, [WRONG_PASSPHRASE, PASSPHRASE], { port: keySrv.port, identityFiles: [encKey], passwordAuthentication: false, kbdInteractiveAuthentication: false })
    expect(r.error).toBeUndefined()
    expect(r.log).toMatch(/wrong passphrase for .*id_enc/)
    expect(r.log).toMatch(/USERAUTH_REQUEST \(publickey\)/)
    expectNoSecret('log', r.log)
  })

  it('encrypted key: three wrong passphrases → SSH_AUTH naming the key, not the passphrases', async () => {
    const r = await connect(keySrv, [WRONG_PASSPHRASE, WRONG_PASSPHRASE, WRONG_PASSPHRASE], {
      port: keySrv.port,
      identityFiles: [encKey],
      passwordAuthentication: false,
      kbdInteractiveAuthentication: false,
    })
    const e = toTunnelError(r.error)
    expect(e.code).toBe('SSH_AUTH')
    expect(r.log).toMatch(/cannot use key .*id_enc/)
    expectNoSecret('log', r.log)
    expectNoSecret('error', formatError(e, 3))
  })
})
