/**
 * Waiting for an engine's connection to be up, shared by both engines: a dial during an outage
 * waits a bounded time for the reconnect, then fails with NOT_CONNECTED — it never hangs.
 */
import type { EventEmitter } from 'node:events'
import { TunnelError } from '../errors'

/** The error for a dial while the connection is down or closed. */
export function notConnected(msg: string): TunnelError {
  return new TunnelError('NOT_CONNECTED', `ssh: ${msg}`, {
    hint: 'the tunnel keeps retrying; check the network path to the SSH server',
  })
}

/**
 * Resolves once `conn` emits 'up' (at once when state() is 'up'); rejects NOT_CONNECTED on
 * 'closed', when already closed, or after timeoutMs. `destination` names the server in the error.
 */
export function waitUntilUp(conn: EventEmitter, state: () => string, destination: string, timeoutMs: number): Promise<void> {
  if (state() === 'up') return Promise.resolve()
  if (state() === 'closed') return Promise.reject(notConnected('the SSH session is closed'))
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      conn.off('up', onUp)
      conn.off('closed', onClosed)
    }
    const onUp = (): void => {
      done()
      resolve()
    }
    const onClosed = (): void => {
      done()
      reject(notConnected('the SSH session is closed'))
    }
    const timer = setTimeout(() => {
      done()
      reject(notConnected(`the SSH connection to ${destination} is down and did not come back within ${Math.round(timeoutMs / 100) / 10} s`))
    }, timeoutMs)
    conn.on('up', onUp)
    conn.on('closed', onClosed)
  })
}
