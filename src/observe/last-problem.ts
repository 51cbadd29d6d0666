import type { Logger, Tag } from './logger'

/** The newest warning or error, for `status` ("last problem 3m12s ago: …"). */
export interface LastProblem {
  readonly at: string
  readonly message: string
}

/**
 * Wraps a logger so the newest warning or error is remembered: a tunnel in the background has
 * no terminal, and `status` is where one looks first.
 */
export function rememberProblems(log: Logger, now: () => Date = () => new Date()): Logger & { lastProblem(): LastProblem | undefined } {
  let last: LastProblem | undefined
  const keep = (tag: Tag, msg: string): void => {
    last = { at: now().toISOString(), message: `[${tag}] ${msg}` }
  }
  return {
    ...log,
    error: (t, m) => {
      keep(t, m)
      log.error(t, m)
    },
    warn: (t, m) => {
      keep(t, m)
      log.warn(t, m)
    },
    lastProblem: () => last,
  }
}
