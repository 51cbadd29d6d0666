/**
 * The reconnect schedule both engines use: exponential backoff from minDelay, capped at
 * maxDelay, with ±20 % jitter so many clients cut off by the same outage do not return in
 * lockstep.
 */

/** Milliseconds to wait before attempt `attempt` (1 = the first retry). */
export function backoffDelay(attempt: number, minDelay: number, maxDelay: number, random: () => number = Math.random): number {
  const base = Math.min(maxDelay, minDelay * 2 ** (attempt - 1))
  return Math.round(Math.min(maxDelay, base * (0.8 + 0.4 * random())))
}

/** The one log line per attempt; `failed`: why the previous attempt failed. */
export function retryLine(destination: string, delayMs: number, attempt: number, failed?: string): string {
  const why = failed ? `; attempt ${attempt - 1} failed: ${failed}` : ''
  return `reconnecting to ${destination} in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt}${why})`
}
