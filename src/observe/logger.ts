/**
 * One logger for the whole process, writing to stderr (stdout stays free for command output
 * such as `status --json`). Lines carry a tag naming the layer: [ssh] [fw] [dns] [route] …
 *
 * Levels: quiet (-q) shows errors only, normal shows warnings and the few info lines a user
 * needs (tunnel up, reconnecting), -v adds per-connection lines, -vv adds protocol debug.
 */
export type Level = 'error' | 'warn' | 'info' | 'verbose' | 'debug'
export type Tag = 'ssh' | 'fw' | 'dns' | 'route' | 'cli' | 'helper' | 'ctl'

const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, verbose: 3, debug: 4 }

export interface Logger {
  error(tag: Tag, msg: string): void
  warn(tag: Tag, msg: string): void
  info(tag: Tag, msg: string): void
  verbose(tag: Tag, msg: string): void
  debug(tag: Tag, msg: string): void
  enabled(level: Level): boolean
}

export interface LoggerOptions {
  level: Level
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void
  /** Prefix each line with an ISO timestamp (on by default when stderr is not a TTY). */
  timestamps?: boolean
}

/** Maps -v/-q counts to a level: default info, -q error, -v verbose, -vv debug. */
export function levelFromFlags(verbose: number, quiet: number): Level {
  if (quiet > 0) return quiet > 1 ? 'error' : 'warn'
  if (verbose >= 2) return 'debug'
  if (verbose === 1) return 'verbose'
  return 'info'
}

export function createLogger(opts: LoggerOptions): Logger {
  const max = ORDER[opts.level]
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const stamp = opts.timestamps ?? !process.stderr.isTTY
  const emit = (level: Level, tag: Tag, msg: string): void => {
    if (ORDER[level] > max) return
    const prefix = stamp ? `${new Date().toISOString()} ` : ''
    const lvl = level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : ''
    write(`${prefix}[${tag}] ${lvl}${msg}`)
  }
  return {
    error: (t, m) => emit('error', t, m),
    warn: (t, m) => emit('warn', t, m),
    info: (t, m) => emit('info', t, m),
    verbose: (t, m) => emit('verbose', t, m),
    debug: (t, m) => emit('debug', t, m),
    enabled: (l) => ORDER[l] <= max,
  }
}

/** A logger that drops everything; the default for library code and tests. */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => {} })

/** A logger that records lines in memory, for tests. */
export function memoryLogger(level: Level = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = []
  const l = createLogger({ level, write: (s) => lines.push(s), timestamps: false })
  return Object.assign(l, { lines })
}
