/**
 * Public key blobs as OpenSSH writes them: their type, OpenSSH certificates (PROTOCOL.certkeys)
 * and the key inside one, FIDO (sk-*) keys, and the public half of an openssh-key-v1 private
 * key file, which is stored unencrypted even when the private half is not — so an encrypted key
 * can be matched against the agent without asking for its passphrase, as OpenSSH does.
 */
import { Reader, sshString } from './agent-client'

/** The key type a blob names (its first string), or undefined when it is not a key blob. */
export function blobType(blob: Buffer): string | undefined {
  try {
    const t = new Reader(blob, 0).string().toString('latin1')
    return /^[\x21-\x7e]{1,64}$/.test(t) ? t : undefined
  } catch {
    return undefined
  }
}

export const isCertType = (t: string): boolean => t.endsWith('-cert-v01@openssh.com')
/** FIDO/U2F keys (sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com, their certs). */
export const isSkType = (t: string): boolean => t.startsWith('sk-')

/** `ssh-ed25519-cert-v01@openssh.com` → `ssh-ed25519`; other names unchanged. */
export function plainType(t: string): string {
  return isCertType(t) ? t.replace(/-cert-v01@openssh\.com$/, '').replace(/^(sk-[a-z0-9-]+)$/, '$1@openssh.com') : t
}

/** What a certificate says, and the plain public key it certifies. */
export interface CertInfo {
  readonly type: string
  /** The certified key as a plain public key blob (what the private key file and the agent hold). */
  readonly keyBlob: Buffer
  readonly serial: bigint
  /** 1 user, 2 host. */
  readonly certType: number
  readonly keyId: string
  readonly principals: string[]
  /** Seconds since the epoch; validBefore 2^64-1 means forever. */
  readonly validAfter: bigint
  readonly validBefore: bigint
}

/** Number of public-key fields after the nonce, per plain type (PROTOCOL.certkeys). */
function keyFieldCount(plain: string): number | undefined {
  if (plain === 'ssh-rsa') return 2 // e, n
  if (plain === 'ssh-dss') return 4 // p, q, g, y
  if (plain === 'ssh-ed25519') return 1 // pk
  if (plain.startsWith('ecdsa-sha2-')) return 2 // curve, public key
  if (plain === 'sk-ssh-ed25519@openssh.com') return 2 // pk, application
  if (plain === 'sk-ecdsa-sha2-nistp256@openssh.com') return 3 // curve, public key, application
  return undefined
}

/** Parses an OpenSSH certificate blob; undefined when it is not one (or is malformed). */
export function parseCert(blob: Buffer): CertInfo | undefined {
  try {
    const r = new Reader(blob, 0)
    const type = r.string().toString('latin1')
    if (!isCertType(type)) return undefined
    const plain = plainType(type)
    const n = keyFieldCount(plain)
    if (n === undefined) return undefined
    r.string() // nonce
    const fields: Buffer[] = []
    for (let i = 0; i < n; i++) fields.push(r.string())
    const serial = r.u64()
    const certType = r.u32()
    const keyId = r.string().toString('utf8')
    const pr = new Reader(r.string(), 0)
    const principals: string[] = []
    while (pr.left > 0) principals.push(pr.string().toString('utf8'))
    const validAfter = r.u64()
    const validBefore = r.u64()
    const keyBlob = Buffer.concat([sshString(plain), ...fields.map((f) => sshString(f))])
    return { type, keyBlob, serial, certType, keyId, principals, validAfter, validBefore }
  } catch {
    return undefined
  }
}

/** The blob of a one-line public key file (`TYPE BASE64 [comment]`), or undefined. */
export function parsePublicKeyText(text: string): Buffer | undefined {
  const m = /^\s*([\x21-\x7e]+)\s+([A-Za-z0-9+/=]+)(?:\s|$)/.exec(text)
  if (!m) return undefined
  const blob = Buffer.from(m[2]!, 'base64')
  return blobType(blob) === m[1] ? blob : undefined
}

const OPENSSH_PRIVATE = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/

/** The public key stored (in clear) in an openssh-key-v1 private key file, or undefined. */
export function publicBlobOfOpensshPrivate(text: string): Buffer | undefined {
  const m = OPENSSH_PRIVATE.exec(text)
  if (!m) return undefined
  try {
    const raw = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')
    const magic = 'openssh-key-v1\0'
    if (raw.subarray(0, magic.length).toString('latin1') !== magic) return undefined
    const r = new Reader(raw, magic.length)
    r.string() // cipher name
    r.string() // kdf name
    r.string() // kdf options
    if (r.u32() < 1) return undefined
    const blob = Buffer.from(r.string())
    return blobType(blob) ? blob : undefined
  } catch {
    return undefined
  }
}
