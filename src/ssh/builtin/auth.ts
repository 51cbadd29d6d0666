import * as fs from 'node:fs'
import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType, ParsedKey } from 'ssh2'
import { NO_MORE_AUTH_METHODS, utils } from './ssh2-compat'
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import type { Prompter } from './types'

/** Decrypted keys kept across reconnects, so a passphrase is asked once per process. */
export type KeyCache = Map<string, ParsedKey>

export interface AuthDeps {
  readonly prompter: Prompter
  readonly log: Logger
  /** Shared by every connection of one session; optional. */
  readonly keyCache?: KeyCache
  /** Called around each question to the user, so the caller can pause its auth timeout. */
  readonly onPrompt?: (active: boolean) => void
}

/** What happened during one authentication, used to build the final error. */
export interface AuthState {
  readonly methodsTried: Set<string>
  readonly keysTried: string[]
  /** Server's list from the last USERAUTH_FAILURE (what it would still accept). */
  serverMethods: string[] | null
  /** A passphrase/password was needed but we could not ask (no TTY or BatchMode). */
  neededSecret: string | null
}

/** How many times OpenSSH asks for a passphrase or password (NumberOfPasswordPrompts). */
const MAX_TRIES = 3

/**
 * Builds ssh2's function-form authHandler that follows OpenSSH's order: none (to learn the
 * server's methods), agent, identity files, keyboard-interactive, password.
 *
 * ssh2 calls the handler after every failure; we return undefined and call `next` later
 * (a returned Promise would be taken as an invalid method and skipped).
 */
export function createAuth(cfg: SshHostConfig, deps: AuthDeps): { handler: AuthHandlerMiddleware; state: AuthState; failure(): TunnelError } {
  const { log, prompter } = deps
  const user = cfg.user
  const who = `${user}@${cfg.alias}`
  const canAsk = (): boolean => !cfg.batchMode && prompter.isInteractive()
  const state: AuthState = { methodsTried: new Set(), keysTried: [], serverMethods: null, neededSecret: null }

  const ask = async (q: string, echo: boolean): Promise<string> => {
    deps.onPrompt?.(true)
    try {
      return await prompter.ask(q, { echo })
    } finally {
      deps.onPrompt?.(false)
    }
  }

  // The plan is a queue of steps; each yields one method or null (skip to the next step).
  type Step = () => Promise<AnyAuthMethod | null>
  const steps: Step[] = []
  steps.push(async () => ({ type: 'none', username: user }))
  if (cfg.pubkeyAuthentication && cfg.identityAgent && !cfg.identitiesOnly && isSocket(cfg.identityAgent)) {
    steps.push(async () => ({ type: 'agent', username: user, agent: cfg.identityAgent! }))
  }
  if (cfg.pubkeyAuthentication) {
    for (const file of cfg.identityFiles) steps.push(() => keyStep(file))
  }
  if (cfg.kbdInteractiveAuthentication) steps.push(async () => kbdStep())
  if (cfg.passwordAuthentication) {
    for (let i = 0; i < MAX_TRIES; i++) steps.push(() => passwordStep())
  }

  const allowed = (m: AuthenticationType): boolean => {
    if (state.serverMethods === null) return true
    const name = m === 'agent' ? 'publickey' : m
    return state.serverMethods.includes(name)
  }

  async function keyStep(file: string): Promise<AnyAuthMethod | null> {
    if (!allowed('publickey')) return null
    const cached = deps.keyCache?.get(file)
    if (cached) return tried(file, { type: 'publickey', username: user, key: cached })
    let data: Buffer
    try {
      data = fs.readFileSync(file)
    } catch {
      return null // OpenSSH silently skips default identities that do not exist
    }
    let key = utils.parseKey(data)
    if (key instanceof Error && /no passphrase given/i.test(key.message)) {
      if (!canAsk()) {
        log.debug('ssh', `skipping encrypted key ${file}: ${cfg.batchMode ? 'BatchMode is on' : 'no terminal to ask for its passphrase'}`)
        state.neededSecret ??= `the passphrase for ${file}`
        return null
      }
      for (let i = 0; i < MAX_TRIES && key instanceof Error; i++) {
        const pass = await ask(`Enter passphrase for key '${file}': `, false)
        if (pass === '') break // OpenSSH: an empty answer skips the key
        key = utils.parseKey(data, pass)
        if (key instanceof Error) log.debug('ssh', `wrong passphrase for ${file}`)
      }
    }
    if (key instanceof Error) {
      log.debug('ssh', `cannot use key ${file}: ${key.message}`)
      return null
    }
    const parsed = Array.isArray(key) ? (key[0] as ParsedKey) : key
    if (!parsed.isPrivateKey()) return null
    deps.keyCache?.set(file, parsed)
    return tried(file, { type: 'publickey', username: user, key: parsed })
  }

  function tried(file: string, m: AnyAuthMethod): AnyAuthMethod {
    state.keysTried.push(file)
    return m
  }

  function kbdStep(): AnyAuthMethod | null {
    if (!allowed('keyboard-interactive')) return null
    if (!canAsk()) {
      state.neededSecret ??= 'a keyboard-interactive answer'
      return null
    }
    return {
      type: 'keyboard-interactive',
      username: user,
      prompt: (name, instructions, _lang, prompts, finish) => {
        if (name) prompter.notice(name)
        if (instructions) prompter.notice(instructions)
        void (async () => {
          const answers: string[] = []
          try {
            for (const p of prompts) answers.push(await ask(p.prompt, p.echo === true))
          } catch {
            // prompter gave up (e.g. terminal closed): answer empty so the server fails this round
          }
          finish(answers)
        })()
      },
    }
  }

  async function passwordStep(): Promise<AnyAuthMethod | null> {
    if (!allowed('password')) return null
    if (!canAsk()) {
      state.neededSecret ??= 'a password'
      return null
    }
    const password = await ask(`${user}@${cfg.hostName}'s password: `, false)
    return { type: 'password', username: user, password }
  }

  let next = 0
  const handler: AuthHandlerMiddleware = (methodsLeft, _partial, cb) => {
    if (methodsLeft) state.serverMethods = methodsLeft
    void (async () => {
      while (next < steps.length) {
        let m: AnyAuthMethod | null = null
        try {
          m = await steps[next++]!()
        } catch (e) {
          log.debug('ssh', `auth step failed: ${(e as Error).message}`)
        }
        if (m && allowed(m.type)) {
          state.methodsTried.add(m.type === 'agent' ? 'publickey' : m.type)
          log.debug('ssh', `${who}: trying ${m.type}${m.type === 'publickey' ? ` ${state.keysTried.at(-1)}` : ''}`)
          return cb(m)
        }
      }
      cb(NO_MORE_AUTH_METHODS)
    })()
  }

  const failure = (): TunnelError => {
    const tried = [...state.methodsTried].filter((m) => m !== 'none')
    const methods = tried.length ? tried.join(',') : 'none'
    const server = state.serverMethods ? `; server accepts: ${state.serverMethods.join(',')}` : ''
    const keys = state.keysTried.length ? `keys tried: ${state.keysTried.join(', ')}` : 'no key was offered'
    if (state.neededSecret && !cfg.batchMode) {
      // Something that might have worked was skipped only because nobody can type the secret.
      return new TunnelError('SSH_NEED_TTY', `${who}: authentication needs ${state.neededSecret} and there is no terminal to ask (methods tried: ${methods})`, {
        hint: `load the key into ssh-agent (ssh-add) or run subnet-tunnel in a terminal; ${keys}`,
      })
    }
    const hintTail = state.neededSecret ? `; BatchMode is on, so ${state.neededSecret} was not asked for` : ''
    return new TunnelError('SSH_AUTH', `${who}: permission denied (methods tried: ${methods}${server})`, {
      hint: `${keys}; load your key with ssh-add or pass it with -i${hintTail}`,
    })
  }

  return { handler, state, failure }
}

function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket()
  } catch {
    return false
  }
}
