/**
 * Rate limit for repeated warnings and errors. Per-connection failures — a refused target, a
 * forward the bastion prohibits, a channel open that times out, accept() hitting EMFILE — come
 * by the hundred when a client retries in a loop or a scanner sweeps a subnet; one line each
 * would bury everything else (and a full disk behind a redirected stderr is the next incident).
 *
 * Lines are grouped by tag and text with every number blanked (connection ids, addresses,
 * ports, counts differ; the failure is the same). Per group and window the first `burst` lines
 * pass; the rest go to the verbose level (so -v still shows each) and, when the window ends, one
 * line says how many were held back. Info, verbose and debug lines are never limited.
 */
import type { Level, Logger, Tag } from './logger'

export interface RepeatLimitOptions {
  /** Lines of one group shown per window (default 3). */
  readonly burst?: number
  /** Window length in ms (default 10 s). */
  readonly windowMs?: number
  /** Timer (tests); must not keep the process alive. Default: an unref'd setTimeout. */
  readonly schedule?: (fn: () => void, ms: number) => void
}

interface Group {
  shown: number
  held: number
  last: string
}

/** Wraps a logger so repeated warnings and errors are bounded (see the module comment). */
export function limitRepeats(log: Logger, opts: RepeatLimitOptions = {}): Logger {
  const burst = opts.burst ?? 3
  const windowMs = opts.windowMs ?? 10_000
  const schedule = opts.schedule ?? ((fn: () => void, ms: number) => void setTimeout(fn, ms).unref())
  const groups = new Map<string, Group>()

  const limited = (level: Extract<Level, 'warn' | 'error'>) => (tag: Tag, msg: string): void => {
    const key = `${level} ${tag} ${msg.replace(/\d+/g, '#')}`
    let g = groups.get(key)
    if (!g) {
      g = { shown: 0, held: 0, last: msg }
      groups.set(key, g)
      const group = g
      schedule(() => {
        groups.delete(key)
        if (group.held > 0) {
          log[level](tag, `${group.held} more like this in the last ${Math.round(windowMs / 1000)} s (-v shows each): ${group.last}`)
        }
      }, windowMs)
    }
    g.last = msg
    if (g.shown < burst) {
      g.shown++
      log[level](tag, msg)
    } else {
      g.held++
      log.verbose(tag, msg)
    }
  }

  return {
    error: limited('error'),
    warn: limited('warn'),
    info: (t, m) => log.info(t, m),
    verbose: (t, m) => log.verbose(t, m),
    debug: (t, m) => log.debug(t, m),
    enabled: (l) => log.enabled(l),
  }
}
