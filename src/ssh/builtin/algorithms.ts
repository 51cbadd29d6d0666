import * as fs from 'node:fs'
import type { Algorithms, CipherAlgorithm, ServerHostKeyAlgorithm } from 'ssh2'
import { TunnelError } from '../../errors'
import { ssh2Constants } from './ssh2-compat'

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

/**
 * The user's Ciphers (ssh_config / -o), in their order, limited to what ssh2 implements. Like
 * OpenSSH, an unknown name is an error rather than silently ignored — and a list that leaves
 * nothing we can speak must not fall back to ciphers the user ruled out.
 */
export function userCipherList(wanted: readonly string[]): string[] {
  const supported = ssh2Constants()?.SUPPORTED_CIPHER ?? []
  const ok = wanted.filter((c) => supported.includes(c))
  if (ok.length === 0) {
    throw new TunnelError('SSH_CONFIG', `Ciphers ${wanted.join(',')}: none is supported by subnet-tunnel`, {
      hint: `choose from ${supported.join(',')}`,
    })
  }
  return ok
}

/**
 * ssh2's `algorithms` option: the user's Ciphers when set (else our order) and the verifier's
 * host key order.
 */
export function algorithmsFor(hostKeyPreference: string[], userCiphers?: readonly string[]): Algorithms {
  const out: Algorithms = {}
  hostAes ??= { value: cpuHasAes() }
  const ciphers = userCiphers ? userCipherList(userCiphers) : cipherPreference(hostAes.value)
  if (ciphers && ciphers.length) out.cipher = ciphers as CipherAlgorithm[]
  const supported = ssh2Constants()?.SUPPORTED_SERVER_HOST_KEY
  const hk = supported ? hostKeyPreference.filter((a) => supported.includes(a)) : []
  if (hk.length) out.serverHostKey = hk as ServerHostKeyAlgorithm[]
  return out
}
