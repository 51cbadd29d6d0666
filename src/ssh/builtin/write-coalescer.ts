import type { Writable } from 'node:stream'

/**
 * Coalesces the SSH transport's writes: one write syscall per event-loop turn instead of one per
 * SSH packet.
 *
 * ssh2 hands every packet it builds straight to `sock.write()` (client.js, Protocol `onWrite`),
 * and net.Socket tries each write at once: a syscall per packet, and with TCP_NODELAY a TCP
 * segment per packet that sshd must read separately. A short forwarded connection costs four
 * packets of ours (CHANNEL_OPEN, DATA, EOF, CLOSE); profiled at 2,000 new connections/s these
 * writes were 27 % of the main thread's busy time. OpenSSH instead appends to an output buffer
 * and writes it once per trip through its poll loop.
 *
 * We do the same: the first write of a turn corks the socket and a setImmediate — which runs
 * after every I/O callback of the current poll phase — uncorks it, so everything written
 * meanwhile leaves in one writev(). Nothing waits for a timer or for more data: the batch goes
 * out before the loop sleeps again, so latency is unchanged when the process is idle, and the
 * bytes and their order are exactly those ssh2 wrote. ssh2 ignores write()'s return value (its
 * flow control is the SSH channel window), so backpressure is unchanged too. end() uncorks by
 * itself (Writable.end), so a DISCONNECT written just before it is not held back.
 */
export function coalesceWrites(sock: Writable): boolean {
  if (coalesced.has(sock)) return false
  if (typeof sock.cork !== 'function' || typeof sock.uncork !== 'function') return false
  coalesced.add(sock)
  const write = sock.write
  let pending = false
  const flush = (): void => {
    pending = false
    // Ours is the only cork taken here; end() may already have released it (then a no-op).
    if (sock.writableCorked > 0) sock.uncork()
  }
  sock.write = function (this: Writable, ...args: Parameters<Writable['write']>): boolean {
    if (!pending && !this.writableEnded && !this.destroyed) {
      pending = true
      this.cork()
      setImmediate(flush)
    }
    return write.apply(this, args)
  } as Writable['write']
  return true
}

const coalesced = new WeakSet<Writable>()
