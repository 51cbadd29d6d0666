/**
 * Host key policy: known_hosts lookup plus StrictHostKeyChecking, with OpenSSH's wording
 * (sshconnect.c check_host_key()) so users recognise the prompts and warnings.
 *
 * Deliberate differences from OpenSSH: a changed or revoked key is refused under *every* policy
 * (OpenSSH's StrictHostKeyChecking=no "continues unsafe" with password auth disabled — a
 * tunnel that carries all of a subnet's traffic should not), and CheckHostIP is not done.
 */
import { TunnelError } from '../../errors'
import type { SshHostConfig, StrictHostKeyChecking } from '../../config/ssh-config-types'
import type { Logger } from '../../observe/logger'
import { shellQuote } from '../../observe/shell-quote'
import type { HostKeyVerifier, Prompter } from './types'
import { ssh2Constants } from './ssh2-compat'
import {
  appendKnownHostName,
  checkHostKeyByName,
  entryMatchesName,
  fingerprintSha256,
  keyTypeForAlgorithm,
  keyTypeLabel,
  keyTypeOfBlob,
  knownHostsName,
  loadKnownHostsFiles,
  type HostKeyCheck,
  type KnownHostEntry,
} from './known-hosts'

// ssh2's own default host key algorithm list, in its order of preference. Read at runtime so
// an ssh2 upgrade that adds or drops algorithms is followed; the literal is ssh2 1.17's list,
// used only if that internal module ever moves.
const SSH2_DEFAULT_HOST_KEY_ALGS: readonly string[] = ssh2Constants()?.DEFAULT_SERVER_HOST_KEY ?? [
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa',
]

export interface HostKeyVerifierOptions {
  /** The host as used for known_hosts (HostName after config, lowercased on lookup). */
  host: string
  port: number
  /** HostKeyAlias: when set, looked up and recorded instead of host/[host]:port. */
  hostKeyAlias?: string
  /** Address connected to, shown in the prompt as OpenSSH does ("host (addr)"). */
  address?: string
  /** UserKnownHostsFile list; new keys are appended to the first. */
  knownHostsFiles: readonly string[]
  globalKnownHostsFiles: readonly string[]
  policy: StrictHostKeyChecking
  hashKnownHosts: boolean
  prompter: Prompter
  log: Logger
  /** Algorithms to order; defaults to ssh2's DEFAULT_SERVER_HOST_KEY. */
  defaultAlgorithms?: readonly string[]
}

/** Characters OpenSSH refuses to write as a known_hosts name (sshconnect.c, strcspn check). */
const UNRECORDABLE = /[@?*#[\]|'"\\]/

/** Creates the verifier for one hop (each ProxyJump hop gets its own). */
export function createHostKeyVerifier(opts: HostKeyVerifierOptions): HostKeyVerifier {
  const name = opts.hostKeyAlias ? opts.hostKeyAlias.toLowerCase() : knownHostsName(opts.host, opts.port)
  const files = [...opts.knownHostsFiles, ...opts.globalKnownHostsFiles]
  const load = (): KnownHostEntry[] => {
    const { entries, problems } = loadKnownHostsFiles(files)
    for (const p of problems) opts.log.debug('ssh', `${p.file}:${p.line}: ${p.reason}; line ignored`)
    return entries
  }

  return {
    preferredAlgorithms(): string[] {
      const defaults = opts.defaultAlgorithms ?? SSH2_DEFAULT_HOST_KEY_ALGS
      const known = new Set(
        load()
          .filter((e) => e.marker === undefined && entryMatchesName(e, name))
          .map((e) => e.keyType),
      )
      // OpenSSH order_hostkeyalgs(): algorithms whose key type is already known go first, in
      // the default order, so a host known by its RSA key is not asked for ed25519 and then
      // reported as changed.
      const first = defaults.filter((a) => known.has(keyTypeForAlgorithm(a)))
      return [...first, ...defaults.filter((a) => !first.includes(a))]
    },

    async verify(keyBlob: Buffer): Promise<void> {
      const entries = load()
      const type = keyTypeLabel(safeType(keyBlob))
      const fp = fingerprintSha256(keyBlob)
      let check = checkHostKeyByName(entries, name, keyBlob)
      if (check.status === 'unknown' && !opts.hostKeyAlias && opts.port !== 22) {
        // OpenSSH retries a new [host]:port without the port and accepts an exact match
        // ("found matching key w/out port"), so keys recorded before a port change still count.
        const plain = checkHostKeyByName(entries, knownHostsName(opts.host, 22), keyBlob)
        if (plain.status === 'match') check = plain
      }
      switch (check.status) {
        case 'match':
          opts.log.debug('ssh', `host key for ${name} found in ${where(check.entry)}`)
          return
        case 'revoked':
          opts.prompter.notice(revokedBanner(type, name))
          throw new TunnelError('HOSTKEY_REVOKED', `${type} host key for ${name} is marked as revoked (${fp}) in ${where(check.entry)}`, {
            hint: 'a stolen key may be in use; ask the server administrator for the new host key',
          })
        case 'mismatch':
          opts.prompter.notice(changedBanner(type, fp, name, check, opts.knownHostsFiles[0] ?? opts.globalKnownHostsFiles[0]))
          throw new TunnelError(
            'HOSTKEY_MISMATCH',
            `host key for ${name} has changed: server sent ${type} ${fp}, offending ${keyTypeLabel(check.entry!.keyType)} key in ${where(check.entry)}`,
            { hint: `if the change is expected: ssh-keygen -R ${shellQuote(name)} -f ${shellQuote(check.entry!.file)}` },
          )
        case 'unknown': {
          // OpenSSH would ask for the host's certificate and check it against this CA; ssh2
          // cannot negotiate certificate host keys, so the plain key it got proves nothing
          // the user trusts — and learning it (ssh-keyscan, accept-new) would bypass the CA.
          const ca = entries.find((e) => e.marker === 'cert-authority' && entryMatchesName(e, name))
          if (ca && opts.policy !== 'no') throw caSignedHost(name, type, fp, ca)
          await handleUnknown(opts, name, type, fp, keyBlob)
        }
      }
    },
  }
}

/**
 * The verifier for one resolved host (target or ProxyJump hop): known_hosts files, policy,
 * hashing and HostKeyAlias all come from its ssh config. Suits SessionInit.makeVerifier.
 */
export function hostKeyVerifierFor(
  cfg: SshHostConfig,
  deps: { prompter: Prompter; log: Logger; address?: string },
): HostKeyVerifier {
  return createHostKeyVerifier({
    host: cfg.hostName,
    port: cfg.port,
    hostKeyAlias: cfg.hostKeyAlias,
    address: deps.address,
    knownHostsFiles: cfg.userKnownHostsFiles,
    globalKnownHostsFiles: cfg.globalKnownHostsFiles,
    policy: cfg.strictHostKeyChecking,
    hashKnownHosts: cfg.hashKnownHosts,
    prompter: deps.prompter,
    log: deps.log,
  })
}

function caSignedHost(name: string, type: string, fp: string, ca: KnownHostEntry): TunnelError {
  return new TunnelError(
    'SSH_UNSUPPORTED',
    `${name} is vouched for by a certificate authority (@cert-authority, ${where(ca)}), and the built-in engine cannot check host certificates (the server showed its plain ${type} key ${fp})`,
    { hint: 'use --ssh-engine openssh (the OpenSSH client checks the host certificate against that CA)' },
  )
}

async function handleUnknown(opts: HostKeyVerifierOptions, name: string, type: string, fp: string, keyBlob: Buffer): Promise<void> {
  const hint =
    `check the fingerprint, then: ssh-keyscan -p ${opts.port} ${shellQuote(opts.host)} >> ~/.ssh/known_hosts` +
    ` (or use -o StrictHostKeyChecking=accept-new)`
  switch (opts.policy) {
    case 'yes':
      throw new TunnelError(
        'HOSTKEY_UNKNOWN',
        `no ${type} host key is known for ${name} and you have requested strict checking (${fp})`,
        { hint },
      )
    case 'ask': {
      if (!opts.prompter.isInteractive()) {
        throw new TunnelError('HOSTKEY_UNKNOWN', `host key for ${name} is not known (${type} ${fp}) and there is no terminal to ask`, {
          hint,
        })
      }
      const shown = opts.address && opts.address !== opts.host ? `${name} (${opts.address})` : name
      let question =
        `The authenticity of host '${shown}' can't be established.\n` +
        `${type} key fingerprint is ${fp}.\n` +
        `Are you sure you want to continue connecting (yes/no/[fingerprint])? `
      // confirm() in sshconnect.c: loop until yes, no, or the exact fingerprint.
      for (;;) {
        const answer = (await opts.prompter.ask(question, { echo: true })).trim()
        if (answer.toLowerCase() === 'yes' || answer === fp) break
        if (answer.toLowerCase() === 'no') {
          // The user has just decided: OpenSSH's last word, and no advice on how to undo it.
          throw new TunnelError('HOSTKEY_UNKNOWN', `${type} host key for ${name} not accepted (${fp}). Host key verification failed.`)
        }
        question = `Please type 'yes', 'no' or the fingerprint: `
      }
      break
    }
    case 'accept-new':
    case 'no':
      break
  }
  await record(opts, name, type, keyBlob)
}

async function record(opts: HostKeyVerifierOptions, name: string, type: string, keyBlob: Buffer): Promise<void> {
  const file = opts.knownHostsFiles[0]
  if (!file || UNRECORDABLE.test(opts.hostKeyAlias ?? opts.host)) {
    opts.log.warn('ssh', `not recording the host key for ${name}: ${file ? 'name has characters known_hosts cannot hold' : 'no UserKnownHostsFile'}`)
    return
  }
  try {
    await appendKnownHostName(file, name, keyBlob, opts.hashKnownHosts)
    opts.log.warn('ssh', `Permanently added '${name}' (${type}) to the list of known hosts.`)
  } catch (e) {
    // Like OpenSSH: failing to record is reported but does not fail a key the policy accepted.
    opts.log.warn('ssh', `Failed to add the host to the list of known hosts (${file}): ${(e as Error).message}`)
  }
}

function safeType(blob: Buffer): string {
  try {
    return keyTypeOfBlob(blob)
  } catch {
    return 'unknown'
  }
}

function where(e: KnownHostEntry | undefined): string {
  return e ? `${e.file}:${e.line}` : '?'
}

const AT_LINE = '@'.repeat(59)

function changedBanner(type: string, fp: string, name: string, check: HostKeyCheck, addTo: string | undefined): string {
  const e = check.entry!
  return [
    AT_LINE,
    '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
    AT_LINE,
    'IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!',
    'Someone could be eavesdropping on you right now (man-in-the-middle attack)!',
    'It is also possible that a host key has just been changed.',
    `The fingerprint for the ${type} key sent by the remote host is`,
    `${fp}.`,
    'Please contact your system administrator.',
    ...(addTo ? [`Add correct host key in ${addTo} to get rid of this message.`] : []),
    `Offending ${keyTypeLabel(e.keyType)} key in ${e.file}:${e.line}`,
    `Host key for ${name} has changed and you have requested strict checking.`,
    'Host key verification failed.',
  ].join('\n')
}

function revokedBanner(type: string, name: string): string {
  return [
    AT_LINE,
    '@       WARNING: REVOKED HOST KEY DETECTED!               @',
    AT_LINE,
    `The ${type} host key for ${name} is marked as revoked.`,
    'This could mean that a stolen key is being used to',
    'impersonate this host.',
    'Host key verification failed.',
  ].join('\n')
}
