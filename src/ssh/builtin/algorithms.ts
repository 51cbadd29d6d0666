import * as fs from 'node:fs'
import type { Algorithms, CipherAlgorithm, KexAlgorithm, MacAlgorithm, ServerHostKeyAlgorithm } from 'ssh2'
import { OPENSSH_DEFAULTS } from '../../config/ssh-algorithms'
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import { ssh2Constants, type Ssh2Constants } from './ssh2-compat'

/*
 * ssh2 throws on an algorithm name it does not support (and support depends on the OpenSSL
 * build), so every list we hand it is filtered against its own tables first (ssh2Constants).
 */

/** True/false from /proc/cpuinfo on Linux; undefined elsewhere or when unreadable. */
export function cpuHasAes(cpuinfo?: string): boolean | undefined {
  let text = cpuinfo
  if (text === undefined) {
    if (process.platform !== 'linux') return undefined
    try {
      text = fs.readFileSync('/proc/cpuinfo', 'utf8')
    } catch {
      return undefined
    }
  }
  // x86: "flags : ... aes ..."; arm64: "Features : ... aes ...".
  const line = text.split('\n').find((l) => /^(flags|Features)\s*:/.test(l))
  if (!line) return undefined
  return line.split(':')[1]!.trim().split(/\s+/).includes('aes')
}

/**
 * Cipher order: with AES-NI, AES-GCM is several times faster than chacha20-poly1305 in
 * OpenSSL, and it needs no separate MAC; without it chacha20 wins. Off Linux we keep
 * ssh2's own defaults (it probes the CPU itself when cpu-features is available).
 */
export function cipherPreference(hasAes: boolean | undefined): string[] | undefined {
  if (hasAes === undefined) return undefined
  const gcm = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com']
  const chacha = ['chacha20-poly1305@openssh.com']
  const ctr = ['aes128-ctr', 'aes192-ctr', 'aes256-ctr']
  const order = hasAes ? [...gcm, ...chacha, ...ctr] : [...chacha, ...gcm, ...ctr]
  const supported = ssh2Constants()?.SUPPORTED_CIPHER
  return supported ? order.filter((c) => supported.includes(c)) : undefined
}

/** /proc/cpuinfo is read once per process. */
let hostAes: { value: boolean | undefined } | undefined

/** The ssh_config lists the built-in engine passes to ssh2, with ssh2's names for them. */
const KINDS = [
  { option: 'Ciphers', key: 'ciphers', supported: (c: Ssh2Constants) => c.SUPPORTED_CIPHER },
  { option: 'KexAlgorithms', key: 'kexAlgorithms', supported: (c: Ssh2Constants) => c.SUPPORTED_KEX },
  { option: 'HostKeyAlgorithms', key: 'hostKeyAlgorithms', supported: (c: Ssh2Constants) => c.SUPPORTED_SERVER_HOST_KEY },
  { option: 'MACs', key: 'macs', supported: (c: Ssh2Constants) => c.SUPPORTED_MAC },
] as const
type Kind = (typeof KINDS)[number]
export type AlgorithmLists = Partial<Pick<SshHostConfig, Kind['key']>>

/**
 * One of the user's lists (ssh_config / -o), in their order, limited to what ssh2 implements;
 * the names it cannot use are logged once per connection. A list that leaves nothing must not
 * fall back to what the user ruled out: an error — SSH_UNSUPPORTED when the names are real
 * OpenSSH algorithms (post-quantum KEX, certificate host keys, umac), SSH_CONFIG for names
 * neither knows (a typo).
 */
export function userAlgorithmList(option: Kind['option'], wanted: readonly string[], log?: Logger): string[] {
  const kind = KINDS.find((k) => k.option === option)!
  const c = ssh2Constants()
  const supported: readonly string[] = c ? kind.supported(c) : []
  const ok = wanted.filter((a) => supported.includes(a))
  const left = wanted.filter((a) => !supported.includes(a))
  if (ok.length === 0) {
    const known = left.filter((a) => KNOWN_TO_OPENSSH[kind.key].includes(a))
    if (known.length === left.length) {
      throw new TunnelError('SSH_UNSUPPORTED', `${option} ${wanted.join(',')}: the built-in engine (ssh2) supports none of these`, {
        hint: `use --ssh-engine openssh, or allow one of ${supported.join(',')}`,
      })
    }
    throw new TunnelError('SSH_CONFIG', `${option} ${wanted.join(',')}: none is supported by subnet-tunnel`, {
      hint: `choose from ${supported.join(',')}`,
    })
  }
  if (left.length > 0) log?.verbose('ssh', `${option}: the built-in engine cannot use ${left.join(',')}; offering ${ok.join(',')}`)
  return ok
}

/** The Ciphers list (see userAlgorithmList). */
export function userCipherList(wanted: readonly string[], log?: Logger): string[] {
  return userAlgorithmList('Ciphers', wanted, log)
}

/** Names OpenSSH knows (its defaults and a few more it accepts), to tell "unsupported here" from a typo. */
const KNOWN_TO_OPENSSH: Record<Kind['key'], readonly string[]> = {
  ciphers: [...OPENSSH_DEFAULTS.ciphers, 'aes128-cbc', 'aes192-cbc', 'aes256-cbc', '3des-cbc'],
  kexAlgorithms: [...OPENSSH_DEFAULTS.kexalgorithms, 'mlkem768x25519-sha256', 'diffie-hellman-group1-sha1', 'diffie-hellman-group14-sha1', 'diffie-hellman-group-exchange-sha1'],
  hostKeyAlgorithms: [...OPENSSH_DEFAULTS.hostkeyalgorithms, 'ssh-rsa', 'ssh-dss', 'ssh-rsa-cert-v01@openssh.com'],
  macs: [...OPENSSH_DEFAULTS.macs, 'hmac-sha1-96', 'hmac-md5', 'hmac-md5-96', 'umac-64@openssh.com', 'umac-128@openssh.com'],
}

/**
 * ssh2's `algorithms` option: each list the user set (ssh_config / -o), else our cipher order
 * and the verifier's host key order (known key types first).
 */
export function algorithmsFor(hostKeyPreference: string[], user: AlgorithmLists = {}, log?: Logger): Algorithms {
  const out: Algorithms = {}
  hostAes ??= { value: cpuHasAes() }
  const ciphers = user.ciphers ? userCipherList(user.ciphers, log) : cipherPreference(hostAes.value)
  if (ciphers && ciphers.length) out.cipher = ciphers as CipherAlgorithm[]
  if (user.kexAlgorithms) out.kex = userAlgorithmList('KexAlgorithms', user.kexAlgorithms, log) as KexAlgorithm[]
  if (user.macs) out.hmac = userAlgorithmList('MACs', user.macs, log) as MacAlgorithm[]
  if (user.hostKeyAlgorithms) {
    out.serverHostKey = userAlgorithmList('HostKeyAlgorithms', user.hostKeyAlgorithms, log) as ServerHostKeyAlgorithm[]
  } else {
    const supported = ssh2Constants()?.SUPPORTED_SERVER_HOST_KEY
    const hk = supported ? hostKeyPreference.filter((a) => supported.includes(a)) : []
    if (hk.length) out.serverHostKey = hk as ServerHostKeyAlgorithm[]
  }
  return out
}
