/**
 * "no matching …" during the handshake, worded like OpenSSH ("no matching key exchange method
 * found. Their offer: …") and with the reason: a server that offers only what ssh2 cannot do
 * (post-quantum key exchange, certificate host keys, umac MACs) needs the OpenSSH engine; one
 * whose offer ssh2 could speak was ruled out by the user's own algorithm lists.
 */
import { formatHostPort } from '../../config/host-port'
import { TunnelError } from '../../errors'
import { USE_OPENSSH } from './auth-failure'
import { ssh2Constants } from './ssh2-compat'
import type { ServerOffer } from './ssh2-compat-auth'

interface Kind {
  /** ssh2's wording after "no matching". */
  readonly ssh2: RegExp
  /** The server-offer key captureServerOffer() records. */
  readonly offerKey: string
  /** OpenSSH's name for it. */
  readonly what: string
  /** The ssh_config option that chooses it. */
  readonly option: string
  readonly supported: () => readonly string[]
}

const KINDS: readonly Kind[] = [
  { ssh2: /key exchange/, offerKey: 'KEX method', what: 'key exchange method', option: 'KexAlgorithms', supported: () => ssh2Constants()?.SUPPORTED_KEX ?? [] },
  { ssh2: /host key/, offerKey: 'Host key format', what: 'host key type', option: 'HostKeyAlgorithms', supported: () => ssh2Constants()?.SUPPORTED_SERVER_HOST_KEY ?? [] },
  { ssh2: /C->S cipher/, offerKey: 'C->S cipher', what: 'cipher', option: 'Ciphers', supported: () => ssh2Constants()?.SUPPORTED_CIPHER ?? [] },
  { ssh2: /S->C cipher/, offerKey: 'S->C cipher', what: 'cipher', option: 'Ciphers', supported: () => ssh2Constants()?.SUPPORTED_CIPHER ?? [] },
  { ssh2: /C->S MAC/, offerKey: 'C->S MAC', what: 'MAC', option: 'MACs', supported: () => ssh2Constants()?.SUPPORTED_MAC ?? [] },
  { ssh2: /S->C MAC/, offerKey: 'S->C MAC', what: 'MAC', option: 'MACs', supported: () => ssh2Constants()?.SUPPORTED_MAC ?? [] },
  { ssh2: /compression/, offerKey: 'C->S compression', what: 'compression method', option: 'Compression', supported: () => ['none', 'zlib', 'zlib@openssh.com'] },
]

/** Markers in a KEX list that are not algorithms (RFC 8308 ext-info, strict KEX). */
const PSEUDO = /^(ext-info-[cs]|kex-strict-[cs]-v00@openssh\.com)$/

/** Post-quantum hybrids: sntrup761 (OpenSSH 8.5+) and ML-KEM (9.9+, the default of 10). */
export const isPostQuantumKex = (a: string): boolean => /sntrup|mlkem|kyber/i.test(a)

/** The TunnelError for ssh2's "Handshake failed: no matching …", or undefined for any other message. */
export function negotiationError(message: string, offer: ServerOffer, at: { host: string; port: number; via?: string }): TunnelError | undefined {
  if (!/no matching/i.test(message)) return undefined
  const kind = KINDS.find((k) => k.ssh2.test(message))
  if (!kind) return undefined
  const theirs = (offer[kind.offerKey] ?? []).filter((a) => !PSEUDO.test(a))
  const where = `${formatHostPort(at.host, at.port)}${at.via ? ` (${at.via})` : ''}`
  const text = `ssh: ${where}: no matching ${kind.what} found. Their offer: ${theirs.length ? theirs.join(',') : '(not seen)'}`
  const supported = kind.supported()
  const usable = theirs.filter((a) => supported.includes(a))
  if (theirs.length > 0 && usable.length === 0) {
    const pq = kind.offerKey === 'KEX method' && theirs.every(isPostQuantumKex)
    const why = pq
      ? 'the server offers only post-quantum key exchange, which the built-in engine (ssh2) cannot do'
      : `the built-in engine (ssh2) supports none of the server's ${kind.what}s`
    return new TunnelError('SSH_UNSUPPORTED', `${text} (${why})`, { hint: USE_OPENSSH })
  }
  return new TunnelError('SSH_PROTOCOL', text, {
    hint: usable.length
      ? `your ${kind.option} rules out what the server offers; allow one, e.g. -o ${kind.option}=+${usable[0]}`
      : 'run with -vv to see both offers',
  })
}
