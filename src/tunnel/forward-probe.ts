/**
 * The start-up check that a bastion forwards at all: one direct-tcpip channel to its own
 * 127.0.0.1:1, through the engine interface. "connect failed" (nothing listens there) or an
 * open channel both mean forwarding works; "administratively prohibited" means the account may
 * not forward (AllowTcpForwarding no, `restrict` or no-port-forwarding on the key), and every
 * connection through the tunnel would be reset — refused now, with the reason, instead of a
 * tunnel that is "up" and carries nothing.
 *
 * OpenSSH answers a destination outside a `permitopen` list exactly the same way (reason 1,
 * "open failed"), so a bastion that permits only some destinations cannot be told apart: the
 * hint names --no-forward-check for it.
 */
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import { DialError } from '../router/dial-error'
import type { SshConnection } from '../ssh/engine'

export const PROBE_TARGET = { host: '127.0.0.1', port: 1 } as const

/** Resolves when forwarding works (or the probe cannot tell); rejects FORWARDING_PROHIBITED. */
export async function probeForwarding(conn: SshConnection, remote: string, log: Logger, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs)
    timer.unref()
  })
  const dial = conn.dial(PROBE_TARGET, { id: 0, frontEnd: 'forward', srcAddress: '127.0.0.1', srcPort: 0 })
  try {
    const r = await Promise.race([dial, late])
    if (r === 'late') {
      // A slow answer is not a refusal: the first real connection will tell.
      log.verbose('ssh', `${remote}: no answer to the forwarding probe within ${timeoutMs} ms; not checked`)
      dial.then((s) => s.destroy(), () => {})
      return
    }
    r.destroy()
    log.debug('ssh', `${remote}: forwarding probe: channel opened`)
  } catch (e) {
    if (e instanceof DialError && e.reason === 'prohibited') {
      throw new TunnelError('FORWARDING_PROHIBITED', `${remote} does not permit TCP forwarding for this account: a probe channel was "administratively prohibited"`, {
        hint: 'allow it on the server (AllowTcpForwarding yes; no `restrict` or no-port-forwarding on your key); if it permits only some destinations (permitopen), start with --no-forward-check',
        cause: e,
      })
    }
    // Refused, unreachable, a timeout: the server tried to connect, so it forwards.
    log.debug('ssh', `${remote}: forwarding probe: ${(e as Error).message}`)
  } finally {
    clearTimeout(timer)
  }
}
