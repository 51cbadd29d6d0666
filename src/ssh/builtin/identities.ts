/**
 * Which public keys to offer, in OpenSSH's order (sshconnect2.c pubkey_prepare()):
 *
 *  1. certificates named by CertificateFile;
 *  2. agent keys that are also an IdentityFile (its public half: the file itself, a `.pub`
 *     beside it, or the clear public part of an openssh-key-v1 file), in the agent's order;
 *  3. the other agent keys, unless IdentitiesOnly;
 *  4. the remaining IdentityFiles (and an `X-cert.pub` found beside X when no CertificateFile
 *     is set), read — and their passphrase asked — only when their turn comes.
 *
 * So an IdentityFile that is only a `.pub` (1Password, Secretive, gpg-agent, a YubiKey's PIV
 * key) works through the agent, IdentitiesOnly keeps the agent's matching keys, and a key the
 * user named is tried before unrelated agent keys burn the server's MaxAuthTries.
 */
import * as fs from 'node:fs'
import type { SshHostConfig } from '../../config/ssh-config-types'
import type { Logger } from '../../observe/logger'
import { agentIdentities, type AgentIdentity } from './agent-client'
import { blobType, isCertType, isSkType, parseCert, parsePublicKeyText, publicBlobOfOpensshPrivate, plainType } from './key-blobs'
import { fingerprintSha256, keyTypeLabel } from './known-hosts'

/** One key to offer. */
export interface Identity {
  /** For messages: the file, or the agent's comment and fingerprint. */
  readonly label: string
  /** Public key or certificate blob; undefined for a file whose public half could not be read. */
  readonly pub?: Buffer
  /** Where the signature comes from: the agent, or the private key in `file`. */
  readonly signer: 'agent' | 'file'
  /** For the agent: the identity it holds, when not `pub` (a certificate whose plain key is in the agent). */
  readonly agentBlob?: Buffer
  /** The IdentityFile (for a certificate: the private key it goes with). */
  readonly file?: string
}

/** An identity left out, and why (a certificate, a FIDO key: the built-in engine cannot sign with them). */
export interface Unusable {
  readonly label: string
  readonly why: string
}

export interface PreparedIdentities {
  readonly ids: Identity[]
  readonly unusable: Unusable[]
}

export interface PrepareOptions {
  readonly log: Logger
  /** Whether this engine can offer certificates (ssh2-compat.ts: certificateSupport()). */
  readonly certificates?: boolean
  /** Replaces the agent query (tests). */
  readonly listAgent?: (socket: string) => Promise<AgentIdentity[]>
}

interface FileEntry {
  readonly file: string
  readonly pub?: Buffer
  /** A certificate file (CertificateFile, or X-cert.pub beside X). */
  readonly certFile?: string
}

/** The identities to offer, in OpenSSH's order; reads files and asks the agent, never prompts. */
export async function prepareIdentities(cfg: SshHostConfig, o: PrepareOptions): Promise<PreparedIdentities> {
  const unusable: Unusable[] = []
  const files: FileEntry[] = []
  const certFiles = cfg.certificateFiles ?? []
  for (const file of cfg.identityFiles) {
    files.push({ file, pub: publicOfIdentityFile(file) })
    // ssh.c load_public_identity_files(): X-cert.pub beside X, only when no CertificateFile is set.
    if (certFiles.length === 0) {
      const cert = readPublicFile(`${file}-cert.pub`)
      if (cert && isCertType(blobType(cert) ?? '')) files.push({ file, pub: cert, certFile: `${file}-cert.pub` })
    }
  }
  const preferred: Identity[] = []
  // 1. CertificateFile certificates go first, each with the IdentityFile that holds its key
  //    (or the agent's key: see below).
  const certIds: Identity[] = []
  for (const cf of certFiles) {
    const cert = readPublicFile(cf)
    const info = cert ? parseCert(cert) : undefined
    if (!cert || !info) {
      o.log.debug('ssh', `CertificateFile ${cf}: not readable or not a certificate; skipped`)
      continue
    }
    const owner = files.find((f) => f.pub?.equals(info.keyBlob))
    certIds.push({ label: cf, pub: cert, signer: 'file', ...(owner && { file: owner.file }) })
  }
  preferred.push(...certIds)

  let agentKeys: AgentIdentity[] = []
  if (cfg.identityAgent && isSocket(cfg.identityAgent)) {
    try {
      agentKeys = await (o.listAgent ?? agentIdentities)(cfg.identityAgent)
    } catch (e) {
      o.log.debug('ssh', `ssh-agent ${cfg.identityAgent}: ${(e as Error).message}`)
    }
  }
  const agentOnly: Identity[] = []
  for (const a of agentKeys) {
    const i = files.findIndex((f) => f.pub?.equals(a.blob))
    if (i >= 0) {
      const f = files.splice(i, 1)[0]!
      preferred.push({ label: f.certFile ?? f.file, pub: a.blob, signer: 'agent', file: f.file })
    } else if (!cfg.identitiesOnly) {
      agentOnly.push({ label: agentLabel(a), pub: a.blob, signer: 'agent' })
    }
  }
  preferred.push(...agentOnly)
  for (const f of files) preferred.push({ label: f.certFile ?? f.file, ...(f.pub && { pub: f.pub }), signer: 'file', file: f.file })
  // A certificate whose plain key the agent holds is signed by the agent, as OpenSSH does.
  for (let i = 0; i < preferred.length; i++) {
    const id = preferred[i]!
    const info = id.signer === 'file' && id.pub ? parseCert(id.pub) : undefined
    const held = info && agentKeys.find((a) => a.blob.equals(info.keyBlob))
    if (held) preferred[i] = { ...id, signer: 'agent', agentBlob: held.blob }
  }

  const ids: Identity[] = []
  for (const id of preferred) {
    const why = id.pub ? unusableWhy(id.pub, o.certificates === true) : undefined
    if (why) unusable.push({ label: id.label, why })
    else if (id.pub && !typeAccepted(cfg, blobType(id.pub)!)) o.log.debug('ssh', `${id.label}: key type ${blobType(id.pub)} not in PubkeyAcceptedAlgorithms; skipped`)
    else ids.push(id)
  }
  return { ids, unusable }
}

/** Why the built-in engine cannot offer this blob, or undefined if it can. */
function unusableWhy(pub: Buffer, certificates: boolean): string | undefined {
  const type = blobType(pub) ?? 'unknown'
  if (isSkType(type)) return `a FIDO security key (${keyTypeLabel(type)}), which needs OpenSSH's security key support`
  if (isCertType(type)) {
    const c = parseCert(pub)
    const what = `an OpenSSH certificate (${keyTypeLabel(plainType(type))}-CERT${c ? ` ID "${c.keyId}"` : ''})`
    if (!certificates) return what
    if (!c || c.certType !== 1) return `${what} that is not a user certificate`
  }
  return undefined
}

/** PubkeyAcceptedAlgorithms (when the user set it) allows this key type (for RSA: any rsa-sha2 or ssh-rsa). */
export function typeAccepted(cfg: SshHostConfig, type: string): boolean {
  const list = cfg.pubkeyAcceptedAlgorithms
  if (!list) return true
  const base = plainType(type)
  const algs = base === 'ssh-rsa' ? ['ssh-rsa', 'rsa-sha2-256', 'rsa-sha2-512'] : [base]
  const cert = isCertType(type)
  return algs.some((a) => list.includes(cert ? a.replace(/(@openssh\.com)?$/, '-cert-v01@openssh.com') : a))
}

function agentLabel(a: AgentIdentity): string {
  const type = blobType(a.blob) ?? 'unknown'
  return `${a.comment || 'agent key'} (${keyTypeLabel(plainType(type))}${isCertType(type) ? '-CERT' : ''} ${fingerprintSha256(a.blob)})`
}

/**
 * The public half of an IdentityFile, as sshkey_load_public(): the file itself (a public key,
 * or the clear public part of an openssh-key-v1 private key), else FILE.pub.
 */
export function publicOfIdentityFile(file: string): Buffer | undefined {
  const text = readText(file)
  if (text !== undefined) {
    const pub = parsePublicKeyText(text) ?? publicBlobOfOpensshPrivate(text)
    if (pub) return pub
  }
  return readPublicFile(`${file}.pub`)
}

function readPublicFile(file: string): Buffer | undefined {
  const text = readText(file)
  return text === undefined ? undefined : parsePublicKeyText(text)
}

/** At most 1 MiB (a key file is a few KB); undefined when missing or unreadable. */
function readText(file: string): string | undefined {
  try {
    const st = fs.statSync(file)
    if (!st.isFile() || st.size > 1 << 20) return undefined
    return fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket()
  } catch {
    return false
  }
}
