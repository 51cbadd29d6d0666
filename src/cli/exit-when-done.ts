/**
 * Ends the process with `code` once the command is done — by process.exit() on every path,
 * never by the event loop simply running dry.
 *
 * - The loop runs dry ('beforeExit'): every write has completed (a pending write keeps the
 *   loop alive), so nothing is lost by leaving now. Left alone, Node would go on to free its
 *   environment: close every handle it still knows and run the loop until each close callback
 *   has come (Environment::CleanupHandles). One handle whose close never completes turns that
 *   into an endless busy loop — 100 % CPU, no system call, no exit. Node 20 has such a handle:
 *   a TCP socket reset while its shutdown was pending (see router/socket-reset.ts, the fix at
 *   the source). process.exit() skips that cleanup, which only frees memory and closes
 *   descriptors the kernel releases at exit anyway, so the same mistake — ours, a
 *   dependency's, Node's — can no longer keep a cron job's tunnel alive forever.
 * - Something still holds the loop (a dead socket's timer): exit after `flushMs` anyway,
 *   which also gives stdio the same short moment to flush.
 */
export function exitWhenDone(code: number, flushMs = 50): void {
  process.exitCode = code
  process.once('beforeExit', () => process.exit(code))
  setTimeout(() => process.exit(code), flushMs).unref()
}
