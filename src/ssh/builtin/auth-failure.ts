/**
 * The one error a failed authentication ends with, naming what was tried, what the server still
 * accepts, and — when it is the reason — what was missing: a secret nobody could type
 * (SSH_NEED_TTY), or something only OpenSSH can do (SSH_UNSUPPORTED: a certificate, a FIDO key,
 * GSSAPI), with `--ssh-engine openssh` in the hint.
 */
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError } from '../../errors'
import type { Unusable } from './identities'

/** What happened during one authentication, used to build the final error. */
export interface AuthState {
  readonly methodsTried: Set<string>
  /** Identities offered (files, or agent comments with fingerprints), in order. */
  readonly keysTried: string[]
  /** The server's list from the last USERAUTH_FAILURE (what it would still accept). */
  serverMethods: string[] | null
  /** A method partly succeeded (AuthenticationMethods needs more than one). */
  partial: boolean
  /** Secrets that were needed but could not be asked (no terminal or askpass, or BatchMode). */
  readonly neededSecrets: string[]
  /** Identities the built-in engine left out (certificates, FIDO keys). */
  readonly unusable: Unusable[]
  /** server-sig-algs from EXT_INFO: undefined before it came, null when the server sent none. */
  serverSigAlgs: string[] | null | undefined
  /** The user cancelled a prompt: no further prompts. */
  cancelled: boolean
}

export const USE_OPENSSH = 'use --ssh-engine openssh (the OpenSSH client can)'
const GSSAPI = ['gssapi-with-mic', 'gssapi-keyex', 'gssapi']
/** Methods the built-in engine can do (hostbased is not offered). */
const OURS = ['publickey', 'keyboard-interactive', 'password']

export function authFailure(cfg: SshHostConfig, state: AuthState): TunnelError {
  const who = `${cfg.user}@${cfg.alias}`
  const tried = [...state.methodsTried].filter((m) => m !== 'none')
  const methods = tried.length ? tried.join(',') : 'none'
  const server = state.serverMethods ? `; server accepts: ${state.serverMethods.join(',')}${state.partial ? ' (after a partial success)' : ''}` : ''
  const keys = state.keysTried.length ? `keys tried: ${state.keysTried.join(', ')}` : 'no key was offered'
  const needs = state.neededSecrets.join(' or ')
  if (state.neededSecrets.length && !cfg.batchMode) {
    // Something that might have worked was skipped only because nobody can type the secret.
    const passphraseOnly = state.neededSecrets.every((s) => s.startsWith('the passphrase'))
    const how = passphraseOnly
      ? 'load the key into ssh-agent (ssh-add), run subnet-tunnel in a terminal, or set SSH_ASKPASS (a program that prints it)'
      : 'run subnet-tunnel in a terminal, or set SSH_ASKPASS to a program that prints the answer (with SSH_ASKPASS_REQUIRE=force when there is no display)'
    return new TunnelError('SSH_NEED_TTY', `${who}: authentication needs ${needs} and there is no terminal to ask (methods tried: ${methods}${server})`, {
      hint: `${how}; ${keys}`,
    })
  }
  const serverMethods = state.serverMethods ?? []
  const gssapi = serverMethods.filter((m) => GSSAPI.includes(m))
  if (gssapi.length > 0 && !serverMethods.some((m) => OURS.includes(m))) {
    return new TunnelError('SSH_UNSUPPORTED', `${who}: the server accepts only GSSAPI (Kerberos) authentication (${gssapi.join(',')}), which the built-in engine cannot do`, {
      hint: USE_OPENSSH,
    })
  }
  if (state.unusable.length > 0) {
    const list = state.unusable.map((u) => `${u.label}: ${u.why}`).join('; ')
    return new TunnelError('SSH_UNSUPPORTED', `${who}: permission denied for what the built-in engine can offer (methods tried: ${methods}${server}); it cannot use ${list}`, {
      hint: `${USE_OPENSSH}; ${keys}`,
    })
  }
  const extra = [
    ...(gssapi.length > 0 ? [`the server also accepts ${gssapi.join(',')} (Kerberos): ${USE_OPENSSH}`] : []),
    ...(state.neededSecrets.length ? [`BatchMode is on, so ${needs} was not asked for`] : []),
  ]
  // After the key was accepted (AuthenticationMethods publickey,…), what failed was a typed answer.
  const typed = tried.filter((m) => m === 'keyboard-interactive' || m === 'password')
  const what =
    state.partial && typed.length > 0
      ? `the key was accepted, then the ${typed.join(' and ')} answers were not (a wrong password or one-time code?)`
      : `${keys}; load your key with ssh-add or pass it with -i`
  return new TunnelError('SSH_AUTH', `${who}: permission denied (methods tried: ${methods}${server})`, {
    hint: `${what}${extra.length ? `; ${extra.join('; ')}` : ''}`,
  })
}

/**
 * The server ended the connection with "Too many authentication failures" (MaxAuthTries): every
 * key offered counted, so the right one may never have had its turn.
 */
export function tooManyFailures(cfg: SshHostConfig, state: AuthState, serverText: string): TunnelError {
  const keys = state.keysTried.length ? `keys tried: ${state.keysTried.join(', ')}` : 'no key was offered'
  return new TunnelError('SSH_AUTH', `${cfg.user}@${cfg.alias}: the server disconnected: ${serverText} (its MaxAuthTries ran out; ${keys})`, {
    hint: 'offer the right key first: name it with -i or IdentityFile, and add -o IdentitiesOnly=yes so other agent keys are not tried',
  })
}
