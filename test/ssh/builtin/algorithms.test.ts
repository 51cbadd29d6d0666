import * as fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { userCiphers, OPENSSH_DEFAULT_CIPHERS } from '../../../src/config/ssh-config'
import { TunnelError } from '../../../src/errors'
import { algorithmsFor, cipherPreference, cpuHasAes, userAlgorithmList, userCipherList } from '../../../src/ssh/builtin/algorithms'
import { type RealSshd, type SshdKeys, canRunSshd, makeSshdKeys, sessionTo, startRealSshd } from '../real-sshd-fixture'

describe('cipher choice', () => {
  it('reads AES support from cpuinfo flags (x86) and features (arm64)', () => {
    expect(cpuHasAes('processor : 0\nflags : fpu sse2 aes avx\n')).toBe(true)
    expect(cpuHasAes('Features : fp asimd aes pmull\n')).toBe(true)
    expect(cpuHasAes('flags : fpu sse2 avx\n')).toBe(false)
  })

  it('puts AES-GCM first with AES-NI and chacha20 first without', () => {
    expect(cipherPreference(true)?.[0]).toBe('aes128-gcm@openssh.com')
    expect(cipherPreference(false)?.[0]).toBe('chacha20-poly1305@openssh.com')
  })

  it("OpenSSH's default list (what ssh -G prints when nothing is set) means: our own order", () => {
    expect(userCiphers(OPENSSH_DEFAULT_CIPHERS.join(','))).toBeUndefined()
    expect(userCiphers(undefined)).toBeUndefined()
  })

  it('a configured list is kept in the user order; + - ^ apply to the default like ssh_config(5)', () => {
    expect(userCiphers('aes256-ctr,aes128-ctr')).toEqual(['aes256-ctr', 'aes128-ctr'])
    expect(userCiphers('^aes256-gcm@openssh.com')?.[0]).toBe('aes256-gcm@openssh.com')
    expect(userCiphers('-chacha20*')).toEqual(OPENSSH_DEFAULT_CIPHERS.filter((c) => !c.startsWith('chacha')))
    expect(userCiphers('+3des-cbc')).toEqual([...OPENSSH_DEFAULT_CIPHERS, '3des-cbc'])
  })

  it('the user list goes to ssh2 as given, minus what ssh2 lacks; nothing usable is an error', () => {
    expect(algorithmsFor(['ssh-ed25519'], { ciphers: ['nonsense-cipher', 'aes256-ctr'] }).cipher).toEqual(['aes256-ctr'])
    const err = (() => {
      try {
        userCipherList(['nonsense-cipher'])
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(TunnelError)
    expect((err as TunnelError).code).toBe('SSH_CONFIG')
  })

  it('KexAlgorithms, HostKeyAlgorithms and MACs go to ssh2 too; OpenSSH names ssh2 lacks are SSH_UNSUPPORTED, not a config error', () => {
    const a = algorithmsFor(['ssh-ed25519'], {
      kexAlgorithms: ['sntrup761x25519-sha512@openssh.com', 'curve25519-sha256'],
      hostKeyAlgorithms: ['ssh-ed25519-cert-v01@openssh.com', 'rsa-sha2-512'],
      macs: ['umac-128-etm@openssh.com', 'hmac-sha2-512'],
    })
    expect(a).toMatchObject({ kex: ['curve25519-sha256'], serverHostKey: ['rsa-sha2-512'], hmac: ['hmac-sha2-512'] })
    expect(() => userAlgorithmList('KexAlgorithms', ['mlkem768x25519-sha256'])).toThrow(expect.objectContaining({ code: 'SSH_UNSUPPORTED' }))
    expect(() => userAlgorithmList('MACs', ['no-such-mac'])).toThrow(expect.objectContaining({ code: 'SSH_CONFIG' }))
  })
})

describe.skipIf(!canRunSshd)('Ciphers against the real sshd (server offers only aes256-ctr)', () => {
  let keys: SshdKeys
  let sshd: RealSshd | undefined

  beforeAll(async () => {
    keys = makeSshdKeys()
    sshd = await startRealSshd(keys, { name: 'ciphers', extra: ['Ciphers aes256-ctr'] })
  })
  afterAll(async () => {
    await sshd?.stop()
    if (keys) fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  it('our default order still finds a common cipher', async () => {
    const s = sessionTo(sshd!.port, keys)
    await s.start()
    await s.close()
  })

  it("a user's Ciphers list is honoured: without aes256-ctr there is no common cipher", async () => {
    const s = sessionTo(sshd!.port, keys, { ciphers: ['chacha20-poly1305@openssh.com'], maxDelayMs: 50 })
    const err = await s.start().catch((e: unknown) => e)
    await s.close()
    expect(err).toBeInstanceOf(Error)
    expect(String((err as Error).message)).toMatch(/cipher|algorithm|handshake/i)
  })
})
