import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { utils } from 'ssh2'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHostKeyVerifier, hostKeyVerifierFor, type HostKeyVerifierOptions } from '../../../src/ssh/builtin/host-key-verifier'
import { fingerprintSha256 } from '../../../src/ssh/builtin/known-hosts'
import { scriptedPrompter } from '../../../src/ssh/builtin/tty-prompter'
import { memoryLogger } from '../../../src/observe/logger'
import { isTunnelError, type TunnelError } from '../../../src/errors'
import type { StrictHostKeyChecking } from '../../../src/config/ssh-config-types'

let dir: string
let n = 0
/** Public key blob ("ssh-ed25519 AAAA…" → Buffer) of a fresh key pair from ssh2. */
function pubBlob(type: 'ed25519' | 'rsa' | 'ecdsa'): { blob: Buffer; line: string } {
  const gen = () =>
    type === 'rsa'
      ? utils.generateKeyPairSync('rsa', { bits: 2048 })
      : type === 'ecdsa'
        ? utils.generateKeyPairSync('ecdsa', { bits: 256 })
        : utils.generateKeyPairSync('ed25519')
  // ssh2 occasionally emits a malformed ed25519 public key (see genKey in helpers.ts): draw again.
  let kp = gen()
  for (let i = 0; i < 10 && utils.parseKey(kp.public) instanceof Error; i++) kp = gen()
  const [t, b64] = kp.public.trim().split(' ')
  return { blob: Buffer.from(b64!, 'base64'), line: `${t} ${b64}` }
}
const ed = () => pubBlob('ed25519')
let K1: { blob: Buffer; line: string }
let K2: { blob: Buffer; line: string }
let R1: { blob: Buffer; line: string }

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-hkv-'))
  K1 = ed()
  K2 = ed()
  R1 = pubBlob('rsa')
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function setup(
  policy: StrictHostKeyChecking,
  known: string,
  extra: Partial<HostKeyVerifierOptions> = {},
  answers: string[] = [],
  interactive = true,
) {
  const userFile = join(dir, `kh${++n}`, 'known_hosts')
  const globalFile = join(dir, `global${n}`)
  if (known !== '') {
    mkdirSync(join(dir, `kh${n}`))
    writeFileSync(userFile, known)
  }
  const prompter = scriptedPrompter(answers, { interactive })
  const log = memoryLogger()
  const opts: HostKeyVerifierOptions = {
    host: 'bastion',
    port: 22,
    knownHostsFiles: [userFile],
    globalKnownHostsFiles: [globalFile],
    policy,
    hashKnownHosts: false,
    prompter,
    log,
    ...extra,
  }
  return { v: createHostKeyVerifier(opts), prompter, log, userFile, globalFile }
}

async function rejection(p: Promise<void>): Promise<TunnelError> {
  try {
    await p
  } catch (e) {
    if (isTunnelError(e)) return e
    throw e
  }
  throw new Error('expected a rejection')
}

describe('known host', () => {
  it('accepts a matching key under the strictest policy, also from the global file', async () => {
    const { v } = setup('yes', `bastion ${K1.line}\n`)
    await expect(v.verify(K1.blob)).resolves.toBeUndefined()
    const g = setup('yes', '')
    writeFileSync(g.globalFile, `bastion ${K2.line}\n`)
    await expect(g.v.verify(K2.blob)).resolves.toBeUndefined()
  })

  it('refuses a changed key under every policy, with banner, fingerprint and file:line', async () => {
    for (const policy of ['no', 'accept-new', 'ask', 'yes'] as const) {
      const { v, prompter, userFile } = setup(policy, `# c\nbastion ${K1.line}\n`, {}, ['yes'])
      const err = await rejection(v.verify(K2.blob))
      expect(err.code).toBe('HOSTKEY_MISMATCH')
      expect(err.message).toContain(fingerprintSha256(K2.blob))
      expect(err.message).toContain(`${userFile}:2`)
      expect(err.hint).toContain(`ssh-keygen -R bastion -f ${userFile}`)
      expect(prompter.notices[0]).toContain('WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!')
      expect(prompter.notices[0]).toContain(`Offending ED25519 key in ${userFile}:2`)
      expect(prompter.questions).toEqual([])
      expect(readFileSync(userFile, 'utf8')).toBe(`# c\nbastion ${K1.line}\n`)
    }
  })

  it('treats a host known only by another key type as changed (OpenSSH HOST_CHANGED)', async () => {
    const { v } = setup('accept-new', `bastion ${R1.line}\n`)
    expect((await rejection(v.verify(K1.blob))).code).toBe('HOSTKEY_MISMATCH')
  })

  it('refuses a @revoked key', async () => {
    const { v, prompter } = setup('no', `bastion ${K1.line}\n@revoked * ${K1.line}\n`)
    expect((await rejection(v.verify(K1.blob))).code).toBe('HOSTKEY_REVOKED')
    expect(prompter.notices[0]).toContain('REVOKED HOST KEY DETECTED')
  })

  it('accepts a [host]:port miss when the portless entry has this exact key, like OpenSSH', async () => {
    const { v } = setup('yes', `bastion ${K1.line}\n`, { port: 2222 })
    await expect(v.verify(K1.blob)).resolves.toBeUndefined()
    const other = setup('yes', `bastion ${K1.line}\n`, { port: 2222 })
    expect((await rejection(other.v.verify(K2.blob))).code).toBe('HOSTKEY_UNKNOWN')
  })

  it('looks up HostKeyAlias instead of the host name', async () => {
    const { v } = setup('yes', `myalias ${K1.line}\n`, { host: '10.0.0.1', port: 2222, hostKeyAlias: 'MyAlias' })
    await expect(v.verify(K1.blob)).resolves.toBeUndefined()
  })
})

describe('hints', () => {
  // A HostName from a config file is not checked (the user's own), but a hint printed as a
  // command must not turn it into shell syntax when pasted.
  const host = "db$(id)'x;reboot"
  const word = `'db$(id)'\\''x;reboot'`

  it('quote the host in the ssh-keyscan command', async () => {
    const { v } = setup('yes', '', { host })
    expect((await rejection(v.verify(K1.blob))).hint).toContain(`ssh-keyscan -p 22 ${word} >> ~/.ssh/known_hosts`)
  })

  it('quote the host and the file in the ssh-keygen -R command', async () => {
    const { v, userFile } = setup('no', `${host} ${K1.line}\n`, { host })
    expect((await rejection(v.verify(K2.blob))).hint).toContain(`ssh-keygen -R ${word} -f ${userFile}`)
  })
})

describe('unknown host', () => {
  it('accept-new records the key and a second verify matches it', async () => {
    const { v, userFile, log } = setup('accept-new', '', { port: 2222 })
    expect(existsSync(userFile)).toBe(false)
    await v.verify(K1.blob)
    expect(readFileSync(userFile, 'utf8')).toBe(`[bastion]:2222 ${K1.line}\n`)
    expect(log.lines.join('\n')).toContain("Permanently added '[bastion]:2222' (ED25519)")
    await v.verify(K1.blob)
    expect(readFileSync(userFile, 'utf8').split('\n')).toHaveLength(2)
    // and now a different key is a change, not a new host
    expect((await rejection(v.verify(K2.blob))).code).toBe('HOSTKEY_MISMATCH')
  })

  it('no accepts and records (hashed when HashKnownHosts=yes)', async () => {
    const { v, userFile } = setup('no', '', { hashKnownHosts: true })
    await v.verify(K1.blob)
    const text = readFileSync(userFile, 'utf8')
    expect(text).toMatch(/^\|1\|/)
    expect(text).not.toContain('bastion')
    await v.verify(K1.blob)
  })

  it('yes refuses with HOSTKEY_UNKNOWN and a hint how to add the key', async () => {
    const { v, userFile } = setup('yes', '', { port: 2200 })
    const err = await rejection(v.verify(K1.blob))
    expect(err.code).toBe('HOSTKEY_UNKNOWN')
    expect(err.message).toContain(fingerprintSha256(K1.blob))
    expect(err.hint).toContain('ssh-keyscan -p 2200 bastion >> ~/.ssh/known_hosts')
    expect(err.hint).toContain('StrictHostKeyChecking=accept-new')
    expect(existsSync(userFile)).toBe(false)
  })

  it('ask without a terminal refuses instead of waiting', async () => {
    const { v, prompter } = setup('ask', '', {}, [], false)
    const err = await rejection(v.verify(K1.blob))
    expect(err.code).toBe('HOSTKEY_UNKNOWN')
    expect(err.message).not.toContain('\n')
    expect(prompter.questions).toEqual([])
  })

  it('ask shows OpenSSH text; yes records', async () => {
    const { v, prompter, userFile } = setup('ask', '', { address: '192.0.2.7' }, ['yes'])
    await v.verify(K1.blob)
    const q = prompter.questions[0]!
    expect(q.echo).toBe(true)
    expect(q.question).toBe(
      "The authenticity of host 'bastion (192.0.2.7)' can't be established.\n" +
        `ED25519 key fingerprint is ${fingerprintSha256(K1.blob)}.\n` +
        'Are you sure you want to continue connecting (yes/no/[fingerprint])? ',
    )
    expect(readFileSync(userFile, 'utf8')).toContain(K1.line)
  })

  it('ask accepts the typed fingerprint after a re-prompt, and no refuses', async () => {
    const ok = setup('ask', '', {}, ['maybe', fingerprintSha256(K1.blob)])
    await ok.v.verify(K1.blob)
    expect(ok.prompter.questions[1]!.question).toBe("Please type 'yes', 'no' or the fingerprint: ")
    const wrongFp = setup('ask', '', {}, [fingerprintSha256(K2.blob), 'no'])
    const no = await rejection(wrongFp.v.verify(K1.blob))
    expect(no.code).toBe('HOSTKEY_UNKNOWN')
    // The user decided: OpenSSH's last words, no advice on how to add the key after all.
    expect(no.message).toMatch(/Host key verification failed\.$/)
    expect(no.hint).toBeUndefined()
    expect(existsSync(wrongFp.userFile)).toBe(false)
  })

  it('a host vouched for by @cert-authority: SSH_UNSUPPORTED naming the CA line, never ssh-keyscan / accept-new, not recorded', async () => {
    for (const policy of ['yes', 'ask', 'accept-new'] as const) {
      const { v, userFile, prompter } = setup(policy, `@cert-authority *.example,bastion ${K2.line}\n`, {}, ['yes'])
      const err = await rejection(v.verify(K1.blob))
      expect(err.code).toBe('SSH_UNSUPPORTED')
      expect(err.message).toContain(`certificate authority (@cert-authority, ${userFile}:1)`)
      expect(err.hint).toMatch(/--ssh-engine openssh/)
      expect(`${err.message} ${err.hint}`).not.toMatch(/ssh-keyscan|accept-new/)
      expect(prompter.questions).toEqual([])
      expect(readFileSync(userFile, 'utf8')).toBe(`@cert-authority *.example,bastion ${K2.line}\n`)
    }
    // A CA for other hosts changes nothing.
    const other = setup('yes', `@cert-authority other ${K2.line}\n`)
    expect((await rejection(other.v.verify(K1.blob))).code).toBe('HOSTKEY_UNKNOWN')
  })
})

describe('preferredAlgorithms', () => {
  const defaults = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
  it("puts the known key type's algorithms first", () => {
    const { v } = setup('ask', `bastion ${R1.line}\nother ${K1.line}\n`, { defaultAlgorithms: defaults })
    expect(v.preferredAlgorithms()).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519', 'ecdsa-sha2-nistp256'])
  })
  it("keeps ssh2's defaults for an unknown host", () => {
    const { v } = setup('ask', '')
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    expect(v.preferredAlgorithms()).toEqual(require('ssh2/lib/protocol/constants').DEFAULT_SERVER_HOST_KEY)
    expect(v.preferredAlgorithms()[0]).toBe('ssh-ed25519')
  })
})

describe('hostKeyVerifierFor', () => {
  it('takes files, policy and HostKeyAlias from the resolved ssh config', async () => {
    const userFile = join(dir, 'cfg-kh')
    writeFileSync(userFile, `hka ${K1.line}\n`)
    const cfg = {
      alias: 'b',
      hostName: 'b.example',
      port: 2222,
      user: 'u',
      identityFiles: [],
      identitiesOnly: false,
      userKnownHostsFiles: [userFile],
      globalKnownHostsFiles: [],
      strictHostKeyChecking: 'yes' as const,
      hashKnownHosts: false,
      hostKeyAlias: 'hka',
      proxyJump: [],
      serverAliveInterval: 15,
      serverAliveCountMax: 3,
      batchMode: false,
      pubkeyAuthentication: true,
      passwordAuthentication: true,
      kbdInteractiveAuthentication: true,
    }
    const v = hostKeyVerifierFor(cfg, { prompter: scriptedPrompter([]), log: memoryLogger() })
    await expect(v.verify(K1.blob)).resolves.toBeUndefined()
    expect((await rejection(v.verify(K2.blob))).code).toBe('HOSTKEY_MISMATCH')
    const noAlias = hostKeyVerifierFor({ ...cfg, hostKeyAlias: undefined }, { prompter: scriptedPrompter([]), log: memoryLogger() })
    expect((await rejection(noAlias.verify(K1.blob))).code).toBe('HOSTKEY_UNKNOWN')
  })
})
