import type { Logger } from '../../observe/logger'
import type { SshEngine } from '../engine'
import { hostKeyVerifierFor } from './host-key-verifier'
import { SshSession } from './session'
import { createPrompter } from './askpass'
import { ssh2Version } from './ssh2-compat'
import type { Prompter } from './types'

export interface BuiltinEngineOptions {
  readonly log: Logger
  /** Asks for passphrases, passwords and unknown host keys; default: the controlling terminal. */
  readonly prompter?: Prompter
}

/**
 * The built-in engine: ssh2 in-process, no OpenSSH client needed. One prompter for every
 * connection, so prompts of connections authenticating in parallel never share the terminal.
 */
export function builtinEngine(o: BuiltinEngineOptions): SshEngine {
  const prompter = o.prompter ?? createPrompter()
  return {
    name: 'builtin',
    connection: (r) =>
      new SshSession({
        target: r.target,
        hops: r.hops,
        prompter,
        log: o.log,
        makeVerifier: (cfg) => hostKeyVerifierFor(cfg, { prompter, log: o.log }),
      }),
  }
}

/** The built-in engine as `--version` lists it: ssh2's version, read from its package.json. */
export function builtinEngineInfo(): { name: 'builtin'; detail?: string } {
  const version = ssh2Version()
  return { name: 'builtin', ...(version && { detail: `ssh2 ${version}` }) }
}
