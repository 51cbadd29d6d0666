/**
 * Turns one identity (identities.ts) into the ssh2 auth methods that offer it: one per
 * signature algorithm, signed by the agent or by the private key file (read, and its passphrase
 * asked, only now). RSA keys are offered as rsa-sha2-512 before rsa-sha2-256, like OpenSSH
 * (its default PubkeyAcceptedAlgorithms order): ssh2 on its own offers rsa-sha2-256 alone.
 */
import * as fs from 'node:fs'
import type { AnyAuthMethod, ParsedKey } from 'ssh2'
import type { SshHostConfig } from '../../config/ssh-config-types'
import type { Logger } from '../../observe/logger'
import { agentSign, signatureOf, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512 } from './agent-client'
import type { Identity } from './identities'
import { blobType, parseCert, plainType } from './key-blobs'
import { utils } from './ssh2-compat'
import { certificateKey, keyAsAlgorithm, singleKeyAgent } from './ssh2-compat-auth'

/** Decrypted keys kept across reconnects, so a passphrase is asked once per process. */
export type KeyCache = Map<string, ParsedKey>

const RSA_ALGORITHMS = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
/** OpenSSH's default order for RSA signatures (ssh-rsa, SHA-1, is off by default since 8.8). */
const DEFAULT_RSA = ['rsa-sha2-512', 'rsa-sha2-256']

const HASH: Record<string, string> = { 'rsa-sha2-512': 'sha512', 'rsa-sha2-256': 'sha256', 'ssh-rsa': 'sha1' }
const AGENT_FLAGS: Record<string, number> = { 'rsa-sha2-512': SSH_AGENT_RSA_SHA2_512, 'rsa-sha2-256': SSH_AGENT_RSA_SHA2_256 }

/**
 * The signature algorithms to offer a key of `type` with. For RSA: the user's
 * PubkeyAcceptedAlgorithms order (default rsa-sha2-512, rsa-sha2-256); when the server named
 * its algorithms (server-sig-algs), the first of those it lists, as OpenSSH's
 * key_sig_algorithm() does; when it did not, each in turn.
 */
export function signatureAlgorithms(type: string, cfg: SshHostConfig, serverSigAlgs: readonly string[] | null | undefined): string[] {
  if (type !== 'ssh-rsa') return [type]
  const prefs = (cfg.pubkeyAcceptedAlgorithms ?? DEFAULT_RSA).filter((a) => RSA_ALGORITHMS.includes(a))
  if (!serverSigAlgs) return prefs
  const first = prefs.find((a) => serverSigAlgs.includes(a))
  return first ? [first] : []
}

export interface KeyMethodDeps {
  readonly user: string
  readonly cfg: SshHostConfig
  readonly log: Logger
  readonly keyCache?: KeyCache
  readonly serverSigAlgs: readonly string[] | null | undefined
  /** Asks for the passphrase of `file`; `again` after a wrong one. Resolves '' to skip the key. */
  readonly askPassphrase: (file: string, again: boolean) => Promise<string>
  /** Whether a passphrase may be asked at all (a terminal or askpass, and no BatchMode). */
  readonly canAsk: () => boolean
  /** Records that a passphrase was needed but could not be asked. */
  readonly needed: (what: string) => void
}

/** One way to offer a key, and the signature algorithm it uses (for messages). */
export type KeyMethod = AnyAuthMethod & { readonly alg: string }

/**
 * A certificate's (algorithm, signature algorithm) pairs, in order: for RSA one per signature
 * algorithm (rsa-sha2-512-cert-v01@openssh.com signed as rsa-sha2-512, …); otherwise the
 * certificate's own type, signed as the plain key type.
 */
function certAlgorithms(certType: string, d: KeyMethodDeps): { alg: string; sigAlg: string }[] {
  const plain = plainType(certType)
  if (plain !== 'ssh-rsa') return [{ alg: certType, sigAlg: plain }]
  return signatureAlgorithms(plain, d.cfg, d.serverSigAlgs).map((a) => ({
    alg: a === 'ssh-rsa' ? certType : `${a}-cert-v01@openssh.com`,
    sigAlg: a,
  }))
}

/** The methods that offer `id`, in order; empty when it cannot be offered (e.g. no private key). */
export async function keyMethods(id: Identity, d: KeyMethodDeps): Promise<KeyMethod[]> {
  const cert = id.pub ? parseCert(id.pub) : undefined
  if (cert) return certMethods(id, cert.keyBlob, d)
  if (id.signer === 'agent') return agentMethods(id, d)
  const key = await loadPrivateKey(id.file!, d)
  if (!key) return []
  return signatureAlgorithms(key.type, d.cfg, d.serverSigAlgs).map((alg) => ({
    alg,
    type: 'publickey',
    username: d.user,
    key: alg === key.type ? key : keyAsAlgorithm(key, alg, (data) => key.sign(data, HASH[alg])),
  }))
}

/** A user certificate (identities.ts left out the ones this ssh2 cannot offer), signed by the agent or its key file. */
async function certMethods(id: Identity, keyBlob: Buffer, d: KeyMethodDeps): Promise<KeyMethod[]> {
  const certType = blobType(id.pub!)!
  const algs = certAlgorithms(certType, d)
  if (id.signer === 'agent') {
    const parsed = utils.parseKey(keyBlob)
    const pub = Array.isArray(parsed) ? parsed[0] : parsed
    if (!pub || pub instanceof Error) return []
    const sock = d.cfg.identityAgent!
    return algs.map(({ alg, sigAlg }) => ({
      alg,
      type: 'agent',
      username: d.user,
      agent: singleKeyAgent(certificateKey(pub, id.pub!, alg, sigAlg, () => new Error('signed by the agent')), (data) =>
        signByAgent(sock, id.agentBlob ?? id.pub!, data, sigAlg),
      ),
    }))
  }
  if (!id.file) {
    d.log.debug('ssh', `${id.label}: no IdentityFile holds the key of this certificate, nor the agent; skipped`)
    return []
  }
  const key = await loadPrivateKey(id.file, d)
  if (!key) return []
  if (!key.getPublicSSH().equals(keyBlob)) {
    d.log.debug('ssh', `${id.label}: certifies another key than ${id.file}; skipped`)
    return []
  }
  return algs.map(({ alg, sigAlg }) => ({
    alg,
    type: 'publickey',
    username: d.user,
    key: certificateKey(key, id.pub!, alg, sigAlg, (data) => key.sign(data, HASH[sigAlg])),
  }))
}

/** A signature from the agent as `alg`; an agent that ignores the RSA flags would sign with SHA-1 under another name: refused. */
async function signByAgent(sock: string, blob: Buffer, data: Buffer, alg: string): Promise<Buffer> {
  const sig = signatureOf(await agentSign(sock, blob, data, AGENT_FLAGS[alg] ?? 0))
  if (sig.algorithm !== alg) throw new Error(`the agent signed with ${sig.algorithm}, not ${alg}`)
  return sig.signature
}

function agentMethods(id: Identity, d: KeyMethodDeps): KeyMethod[] {
  const parsed = utils.parseKey(id.pub!)
  const pub = Array.isArray(parsed) ? parsed[0] : parsed
  if (!pub || pub instanceof Error) {
    d.log.debug('ssh', `agent key ${id.label}: ${pub instanceof Error ? pub.message : 'unreadable'}; skipped`)
    return []
  }
  const sock = d.cfg.identityAgent!
  return signatureAlgorithms(pub.type, d.cfg, d.serverSigAlgs).map((alg) => {
    const sign = (data: Buffer): Promise<Buffer> => signByAgent(sock, id.pub!, data, alg)
    const key = alg === pub.type ? pub : keyAsAlgorithm(pub, alg, () => new Error('signed by the agent'))
    return { alg, type: 'agent', username: d.user, agent: singleKeyAgent(key, sign) }
  })
}

/**
 * The private key in `file`, decrypted (asking for its passphrase up to NumberOfPasswordPrompts
 * times), or undefined when it cannot be used: missing (OpenSSH skips default identities that do
 * not exist), only a public key, not decryptable, or no way to ask.
 */
async function loadPrivateKey(file: string, d: KeyMethodDeps): Promise<ParsedKey | undefined> {
  const cached = d.keyCache?.get(file)
  if (cached) return cached
  let data: Buffer
  try {
    data = fs.readFileSync(file)
  } catch {
    d.log.debug('ssh', `no private key ${file}`)
    return undefined
  }
  let key = utils.parseKey(data)
  if (key instanceof Error && /no passphrase given/i.test(key.message)) {
    if (!d.canAsk()) {
      d.log.debug('ssh', `skipping encrypted key ${file}: ${d.cfg.batchMode ? 'BatchMode is on' : 'no terminal (or SSH_ASKPASS) to ask for its passphrase'}`)
      d.needed(`the passphrase for key ${file}`)
      return undefined
    }
    const tries = Math.max(1, d.cfg.numberOfPasswordPrompts ?? 3)
    for (let i = 0; i < tries && key instanceof Error; i++) {
      const pass = await d.askPassphrase(file, i > 0)
      if (pass === '') break // OpenSSH: an empty answer skips the key
      key = utils.parseKey(data, pass)
      if (key instanceof Error) d.log.debug('ssh', `wrong passphrase for ${file}`)
    }
  }
  if (key instanceof Error) {
    d.log.debug('ssh', `cannot use key ${file}: ${key.message}`)
    return undefined
  }
  const parsed = Array.isArray(key) ? (key[0] as ParsedKey) : key
  if (!parsed.isPrivateKey()) {
    d.log.debug('ssh', `${file} holds only a public key (${blobType(parsed.getPublicSSH())}) and the agent does not have it; skipped`)
    return undefined
  }
  d.keyCache?.set(file, parsed)
  return parsed
}
