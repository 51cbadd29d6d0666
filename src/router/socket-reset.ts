import type { Socket } from 'node:net'

/**
 * Resets a TCP socket (RST, so the peer sees ECONNRESET instead of a clean EOF) — except when
 * its FIN is already on the way, where it closes it plainly. Use this, never
 * `socket.resetAndDestroy()` directly: that call can leak the socket and hang the process.
 *
 * Why: resetAndDestroy() ends in libuv's uv_tcp_close_reset(), which refuses (UV_EINVAL)
 * while a shutdown request is pending on the stream — libuv does not allow mixing the two.
 * Node 20's TCPWrap::Reset marks the handle "closing" even when that call fails, so the
 * handle is never closed: 'close' never fires (whoever waits for it waits forever), the file
 * descriptor leaks, and when the event loop later runs dry, Node's exit-time cleanup
 * (Environment::CleanupHandles) waits for that close callback in an endless loop of
 * uv_run() calls — 100 % CPU, no system call, the process never exits. That was the
 * 1-in-100 hang of `exec` (the -L / -D / transparent front-ends reset their sockets at stop).
 *
 * A shutdown is pending exactly from end()'s _final (uv_shutdown) until its callback, which
 * Writable runs only once every queued write has completed: so the socket is ended, not yet
 * finished, and nothing is queued (writableLength 0). In that state every byte we wrote is
 * already in the kernel and the FIN follows it, so a plain close delivers the same stream a
 * completed shutdown would; nothing is cut that a reset should announce. With bytes still
 * queued no shutdown has been requested yet, and the reset works (and is what we want: the
 * peer must see that its stream was cut).
 */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return
  if (shutdownMayBePending(socket)) socket.destroy()
  else socket.resetAndDestroy()
}

/** True while end() may have a libuv shutdown request outstanding (see resetSocket). */
export function shutdownMayBePending(socket: Socket): boolean {
  return socket.writableEnded && !socket.writableFinished && socket.writableLength === 0
}
