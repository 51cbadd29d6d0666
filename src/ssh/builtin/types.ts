/**
 * Asks the human something on the controlling terminal. With no terminal, isInteractive() is
 * false and callers must fail with a clear error instead of waiting for an answer that never comes.
 */
export interface Prompter {
  isInteractive(): boolean
  /**
   * Shows question, returns the answer; echo=false for secrets. Rejects if not interactive, and
   * when `signal` aborts (the connection died): the prompt is then closed cleanly — a newline,
   * echo restored, what was typed dropped — so nothing typed later lands in a dead prompt.
   */
  ask(question: string, opts: { echo: boolean; signal?: AbortSignal }): Promise<string>
  /** Prints a notice (warnings such as the changed-host-key banner) where the user sees it. */
  notice(text: string): void
}

/** Decides whether a presented host key is acceptable, per known_hosts and policy. */
export interface HostKeyVerifier {
  /**
   * Host key algorithms in the order to offer them: those already known for this host first,
   * as OpenSSH does, so a host known by its RSA key is not reported as "changed" because the
   * server would have preferred ed25519.
   */
  preferredAlgorithms(): string[]
  /** Resolves if acceptable (recording it if policy says so), rejects with a TunnelError. */
  verify(keyBlob: Buffer): Promise<void>
}
