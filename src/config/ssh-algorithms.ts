/**
 * The algorithm lists of ssh_config(5): Ciphers, KexAlgorithms, HostKeyAlgorithms, MACs and
 * PubkeyAcceptedAlgorithms. A value is a comma-separated list that replaces the default, or
 * starts with `+` (append to the default), `-` (remove from it; `*` and `?` wildcards) or `^`
 * (put first). `ssh -G` prints the final list, always — so "the user did not set it" can only
 * be recognised by comparing with the defaults of the same ssh binary (`ssh -G -F /dev/null`);
 * the parser fallback sees the raw value and applies the forms to OpenSSH's defaults itself.
 */

export const ALGORITHM_OPTIONS = ['ciphers', 'kexalgorithms', 'hostkeyalgorithms', 'macs', 'pubkeyacceptedalgorithms'] as const
export type AlgorithmOption = (typeof ALGORITHM_OPTIONS)[number]
export type AlgorithmDefaults = Readonly<Record<AlgorithmOption, readonly string[]>>

/** OpenSSH 8.x–9.x's default Ciphers, which `ssh -G` prints when nothing is configured. */
export const OPENSSH_DEFAULT_CIPHERS: readonly string[] = [
  'chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com',
]

const CERT_AND_PLAIN_KEYS = [
  'ssh-ed25519-cert-v01@openssh.com', 'ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com', 'sk-ssh-ed25519-cert-v01@openssh.com', 'sk-ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'rsa-sha2-512-cert-v01@openssh.com', 'rsa-sha2-256-cert-v01@openssh.com', 'ssh-ed25519', 'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
  'rsa-sha2-512', 'rsa-sha2-256',
]

/**
 * OpenSSH 9.x's defaults (readconf.c / myproposal.h), for the parser fallback, which has no ssh
 * binary to ask. With `ssh -G` the binary's own defaults are used instead.
 */
export const OPENSSH_DEFAULTS: AlgorithmDefaults = {
  ciphers: OPENSSH_DEFAULT_CIPHERS,
  kexalgorithms: [
    'sntrup761x25519-sha512', 'sntrup761x25519-sha512@openssh.com', 'curve25519-sha256', 'curve25519-sha256@libssh.org',
    'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521', 'diffie-hellman-group-exchange-sha256',
    'diffie-hellman-group16-sha512', 'diffie-hellman-group18-sha512', 'diffie-hellman-group14-sha256',
  ],
  hostkeyalgorithms: CERT_AND_PLAIN_KEYS,
  macs: [
    'umac-64-etm@openssh.com', 'umac-128-etm@openssh.com', 'hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com',
    'hmac-sha1-etm@openssh.com', 'umac-64@openssh.com', 'umac-128@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512', 'hmac-sha1',
  ],
  pubkeyacceptedalgorithms: CERT_AND_PLAIN_KEYS,
}

const names = (t: string): string[] => t.split(',').map((c) => c.trim()).filter(Boolean)

/** `*` and `?` patterns of ssh_config as a RegExp (match_pattern()). */
function pattern(p: string): RegExp {
  return new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`)
}

/** A value with its `+`/`-`/`^` form applied to `defaults` (a plain list replaces them). */
export function applyAlgorithmSpec(value: string, defaults: readonly string[]): string[] {
  const v = value.trim()
  if (v.startsWith('+')) return [...defaults, ...names(v.slice(1)).filter((c) => !defaults.includes(c))]
  if (v.startsWith('^')) {
    const first = names(v.slice(1))
    return [...first, ...defaults.filter((c) => !first.includes(c))]
  }
  if (v.startsWith('-')) {
    const pats = names(v.slice(1)).map(pattern)
    return defaults.filter((c) => !pats.some((r) => r.test(c)))
  }
  // A plain list may hold patterns too: they pick from the defaults, in the defaults' order.
  const out: string[] = []
  for (const n of names(v)) {
    const picked = /[*?]/.test(n) ? defaults.filter((d) => pattern(n).test(d)) : [n]
    for (const p of picked) if (!out.includes(p)) out.push(p)
  }
  return out
}

/**
 * The list the user chose, in their order with the forms applied, or undefined when it is
 * the default (then the engine keeps its own order) or empty.
 */
export function userAlgorithms(value: string | undefined, defaults: readonly string[]): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined
  const out = applyAlgorithmSpec(value, defaults)
  const isDefault = out.length === defaults.length && out.every((c, i) => c === defaults[i])
  return isDefault ? undefined : out
}

/** The Ciphers value as the user set it (see userAlgorithms), against OpenSSH's default ciphers. */
export function userCiphers(value: string | undefined): string[] | undefined {
  return userAlgorithms(value, OPENSSH_DEFAULT_CIPHERS)
}

/** Defaults from `ssh -G -F /dev/null` output (its parsed map); OpenSSH 9.x's for any list it lacks. */
export function defaultsFrom(raw: ReadonlyMap<string, readonly string[]> | undefined): AlgorithmDefaults {
  const out: Record<string, readonly string[]> = {}
  for (const k of ALGORITHM_OPTIONS) {
    const v = raw?.get(k)?.[0]
    out[k] = v ? names(v) : OPENSSH_DEFAULTS[k]
  }
  return out as AlgorithmDefaults
}
