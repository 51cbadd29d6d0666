import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { resetSocket } from './socket-reset'

/** Bytes moved by one piped connection, and how it ended. */
export interface PipeResult {
  readonly bytesUp: number // client → remote
  readonly bytesDown: number // remote → client
  /** undefined for a clean close (both sides ended), else the first error seen. */
  readonly error?: Error
}

/**
 * Joins a client socket and a remote stream in both directions.
 *
 * - Backpressure both ways: pipe() pauses the reader when the writer's buffer is full, so a
 *   slow client throttles the SSH channel (whose window then stops being topped up) and vice
 *   versa; nothing buffers without bound.
 * - Half-close: when one side ends (FIN / SSH EOF) we end() the other and keep reading the
 *   reverse direction — `shutdown(SHUT_WR)` semantics that protocols like rsync and
 *   HTTP/1.0 request bodies rely on. The client socket must be created with allowHalfOpen.
 * - Failure: an error on either side resets the client (RST, so the application sees
 *   ECONNRESET rather than a clean EOF that could be mistaken for a complete response) and
 *   destroys the remote stream. If the client's FIN is already on its way (the remote ended
 *   first, all of its bytes are with the kernel), it is closed instead: see resetSocket.
 */
export function pipeBoth(
  client: Socket,
  remote: Duplex,
  counters?: { bytesUp: number; bytesDown: number },
): Promise<PipeResult> {
  return new Promise((resolve) => {
    let bytesUp = 0
    let bytesDown = 0
    let firstError: Error | undefined
    let clientEnded = false
    let remoteEnded = false
    let settled = false

    const finish = (): void => {
      if (settled) return
      settled = true
      resolve({ bytesUp, bytesDown, error: firstError })
    }
    const fail = (err: Error): void => {
      firstError ??= err
      resetSocket(client)
      if (!remote.destroyed) remote.destroy()
    }

    // Live counts for status output: one addition per chunk, no timers.
    client.on('data', (b: Buffer) => {
      bytesUp += b.length
      if (counters) counters.bytesUp += b.length
    })
    remote.on('data', (b: Buffer) => {
      bytesDown += b.length
      if (counters) counters.bytesDown += b.length
    })
    // end: false — we propagate the FIN ourselves so the other direction stays open.
    client.pipe(remote, { end: false })
    remote.pipe(client, { end: false })

    client.on('end', () => {
      clientEnded = true
      remote.end()
      // (a second end() on a finished socket only builds an error object to throw away)
      if (remoteEnded && !client.writableEnded) client.end()
    })
    remote.on('end', () => {
      remoteEnded = true
      if (!client.destroyed) client.end()
    })
    client.on('error', fail)
    remote.on('error', fail)
    // A paused socket still emits 'end' when its FIN arrives with nothing buffered: a client
    // that half-closed before the channel opened has already ended. Forward that FIN now.
    if (client.readableEnded) {
      clientEnded = true
      remote.end()
    }
    // 'close' on the client fires once the socket is fully gone (both directions, or reset).
    client.on('close', () => {
      if (!remote.destroyed) {
        // The client vanished without an error (e.g. destroyed by us): release the channel.
        if (!(clientEnded && remoteEnded)) remote.destroy()
      }
      finish()
    })
    remote.on('close', () => {
      // An SSH channel can close without EOF (the server dropped it): reset the client.
      if (!remoteEnded && !client.destroyed) fail(firstError ?? new Error('remote closed without EOF'))
      else if (remoteEnded && clientEnded && !client.destroyed && !client.writableEnded) client.end()
    })
    // A remote that failed between the dial and now (the server closed the channel at once)
    // has already emitted 'close', which nobody heard: without this the client would wait for
    // ever. Reset it now, the same answer as a remote that closes without EOF.
    if (remote.destroyed) fail(remote.errored ?? new Error('remote closed before piping started'))
    // Likewise a client already gone: release the remote; its 'close' may have passed too.
    if (client.destroyed) {
      if (!remote.destroyed) remote.destroy()
      finish()
    }
  })
}
