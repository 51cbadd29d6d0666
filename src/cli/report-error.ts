import { type ErrorCode, TunnelError, toTunnelError } from '../errors'

/** Codes that mean "you asked for something impossible" (exit 2), as opposed to a failure (exit 1). */
const USAGE_CODES = new Set<ErrorCode>(['USAGE', 'BAD_CIDR', 'NO_SUBNETS', 'NO_REMOTE'])

export function exitCodeFor(e: TunnelError): number {
  return USAGE_CODES.has(e.code) ? 2 : 1
}

/**
 * The user-facing form of an error: one line with the message and the stable code, then the
 * hint on its own line. With -v the cause chain follows, for bug reports.
 */
export function formatError(err: unknown, verbose = 0): string {
  const e = toTunnelError(err)
  const lines = [`subnet-tunnel: error: ${firstLine(e.message)} [${e.code}]`]
  if (e.hint) lines.push(`  hint: ${e.hint}`)
  if (verbose > 0) {
    let cause = e.cause
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      lines.push(`  cause: ${cause instanceof Error ? firstLine(cause.message) : String(cause)}`)
      cause = cause instanceof Error ? cause.cause : undefined
    }
    if (e.code === 'INTERNAL' && err instanceof Error && err.stack) lines.push(err.stack)
  }
  return lines.join('\n')
}

function firstLine(s: string): string {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? s
  return line.trim()
}
