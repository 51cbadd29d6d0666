import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType, KeyboardInteractiveAuthMethod } from 'ssh2'
import type { SshHostConfig } from '../../config/ssh-config-types'
import type { TunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import { authFailure, type AuthState } from './auth-failure'
import { keyMethods, type KeyCache } from './auth-keys'
import { prepareIdentities } from './identities'
import { NO_MORE_AUTH_METHODS } from './ssh2-compat'
import { certificateSupport, type AuthMessageHooks } from './ssh2-compat-auth'
import { terminalText } from './terminal-text'
import type { Prompter } from './types'

export type { AuthState } from './auth-failure'
export type { KeyCache } from './auth-keys'

export interface AuthDeps {
  readonly prompter: Prompter
  readonly log: Logger
  /** Shared by every connection of one session; optional. */
  readonly keyCache?: KeyCache
  /** Called around each question to the user, so the caller can pause its auth timeout. */
  readonly onPrompt?: (active: boolean) => void
  /** Aborts when the connection is gone: an open prompt is then cancelled cleanly. */
  readonly signal?: AbortSignal
}

/**
 * ssh2's function-form authHandler, in OpenSSH's order: none (to learn the server's methods),
 * public keys (identities.ts: CertificateFile, agent keys named by IdentityFile, other agent
 * keys, the remaining files), keyboard-interactive, password — the last two up to
 * NumberOfPasswordPrompts times each, while the server still lists them.
 *
 * ssh2 calls the handler after every failure; we return undefined and call `next` later
 * (a returned Promise would be taken as an invalid method and skipped).
 */
export function createAuth(
  cfg: SshHostConfig,
  deps: AuthDeps,
): { handler: AuthHandlerMiddleware; state: AuthState; hooks: AuthMessageHooks; failure(): TunnelError } {
  const { log, prompter } = deps
  const user = cfg.user
  // OpenSSH's prompts name the host it connected to (HostKeyAlias when set), not the alias.
  const host = cfg.hostKeyAlias ?? cfg.hostName
  const who = `${user}@${cfg.alias}`
  const prompts = Math.max(1, cfg.numberOfPasswordPrompts ?? 3)
  const canAsk = (): boolean => !cfg.batchMode && prompter.isInteractive()
  const state: AuthState = {
    methodsTried: new Set(),
    keysTried: [],
    serverMethods: null,
    partial: false,
    neededSecrets: [],
    unusable: [],
    serverSigAlgs: undefined,
    cancelled: false,
  }
  const needed = (what: string): void => {
    if (!state.neededSecrets.includes(what)) state.neededSecrets.push(what)
  }

  const ask = async (q: string, echo: boolean): Promise<string> => {
    deps.onPrompt?.(true)
    try {
      return await prompter.ask(q, { echo, ...(deps.signal && { signal: deps.signal }) })
    } finally {
      deps.onPrompt?.(false)
    }
  }

  const allowed = (m: AuthenticationType): boolean => {
    if (state.serverMethods === null) return true
    return state.serverMethods.includes(m === 'agent' ? 'publickey' : m)
  }

  async function* methods(): AsyncGenerator<AnyAuthMethod & { label?: string; alg?: string }> {
    yield { type: 'none', username: user }
    if (cfg.pubkeyAuthentication) {
      const prepared = await prepareIdentities(cfg, { log, certificates: certificateSupport() })
      state.unusable.push(...prepared.unusable)
      for (const u of prepared.unusable) log.debug('ssh', `not offering ${u.label}: ${u.why}`)
      for (const id of prepared.ids) {
        // Before a key file is read (and its passphrase asked), the server must still want keys.
        if (!allowed('publickey')) break
        const ms = await keyMethods(id, {
          user,
          cfg,
          log,
          ...(deps.keyCache && { keyCache: deps.keyCache }),
          serverSigAlgs: state.serverSigAlgs,
          canAsk,
          needed,
          askPassphrase: (file, again) =>
            ask(again ? `Bad passphrase, try again for '${file}': ` : `Enter passphrase for key '${file}': `, false).catch(() => ''),
        })
        for (const m of ms) yield { ...m, label: id.label }
      }
    }
    if (cfg.kbdInteractiveAuthentication) {
      for (let i = 0; i < prompts && allowed('keyboard-interactive') && !state.cancelled; i++) {
        if (!canAsk()) {
          needed(`an answer to the server's keyboard-interactive prompt (a password or one-time code) for ${user}@${host}`)
          break
        }
        yield { type: 'keyboard-interactive', username: user, prompt: kbdPrompt }
      }
    }
    if (cfg.passwordAuthentication) {
      for (let i = 0; i < prompts && allowed('password') && !state.cancelled; i++) {
        if (!canAsk()) {
          needed(`the password for ${user}@${host}`)
          break
        }
        // sshconnect2.c userauth_passwd(): said before every prompt after the first.
        if (i > 0) prompter.notice('Permission denied, please try again.')
        let password: string
        try {
          password = await ask(`${user}@${host}'s password: `, false)
        } catch {
          state.cancelled = true
          break
        }
        yield { type: 'password', username: user, password }
      }
    }
  }

  /** One INFO_REQUEST: each prompt prefixed `(user@host)` like OpenSSH ≥ 8.4; the text is the server's, so filtered. */
  const kbdPrompt: KeyboardInteractiveAuthMethod['prompt'] = (name, instructions, _lang, ps, finish) => {
    if (name) prompter.notice(terminalText(name))
    if (instructions) prompter.notice(terminalText(instructions))
    void (async () => {
      const answers: string[] = []
      try {
        for (const p of ps) answers.push(await ask(`(${user}@${host}) ${terminalText(p.prompt)}`, p.echo === true))
      } catch {
        // Cancelled (^D, the connection closed): no more rounds; the server fails this one.
        state.cancelled = true
      }
      finish(answers)
    })()
  }

  const queue = methods()
  const handler: AuthHandlerMiddleware = (methodsLeft, partial, cb) => {
    if (methodsLeft) state.serverMethods = methodsLeft
    if (partial) state.partial = true
    void (async () => {
      for (;;) {
        let r: IteratorResult<AnyAuthMethod & { label?: string; alg?: string }>
        try {
          r = await queue.next()
        } catch (e) {
          log.debug('ssh', `auth: ${(e as Error).message}`)
          return cb(NO_MORE_AUTH_METHODS)
        }
        if (r.done) return cb(NO_MORE_AUTH_METHODS)
        const { label, alg, ...m } = r.value
        if (!allowed(m.type)) continue
        state.methodsTried.add(m.type === 'agent' ? 'publickey' : m.type)
        if (label && state.keysTried.at(-1) !== label) state.keysTried.push(label)
        log.debug('ssh', `${who}: trying ${m.type}${label ? ` ${label}` : ''}${alg ? ` (${alg})` : ''}`)
        return cb(m as AnyAuthMethod)
      }
    })()
  }

  const hooks: AuthMessageHooks = {
    serverSigAlgs: (algs) => {
      state.serverSigAlgs = algs
    },
    // ssh2 does not pass these on while it tries agent keys: keep the server's latest word.
    failure: (list, partial) => {
      state.serverMethods = list
      if (partial) state.partial = true
    },
  }

  return { handler, state, hooks, failure: () => authFailure(cfg, state) }
}
