import { TunnelError, errorMessage } from '../../errors'
import type { RemoteResult } from '../engine'
import type { Client } from './ssh2-compat'

/**
 * Runs one command on the bastion through an exec channel and collects its output (bounded).
 * Used for small lookups such as the remote /etc/resolv.conf. Rejects with REMOTE_EXEC when the
 * server refuses the exec request (a `restrict`ed or forced-command account) or times out; a
 * command that runs but fails resolves with its exit code, for the caller to judge.
 */
export function runRemote(
  session: { readonly client: Client | undefined },
  command: string,
  opts: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<RemoteResult> {
  const client = session.client
  const timeoutMs = opts.timeoutMs ?? 10_000
  const maxBytes = opts.maxBytes ?? 64 * 1024
  if (!client) return Promise.reject(new TunnelError('NOT_CONNECTED', 'ssh: not connected'))
  return new Promise((resolve, reject) => {
    let done = false
    const timer = setTimeout(() => {
      finish(new TunnelError('REMOTE_EXEC', `ssh: "${command}" on the bastion timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    const finish = (err: TunnelError | undefined, result?: RemoteResult): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(result!)
    }
    client.exec(command, (err, stream) => {
      if (err) {
        finish(
          new TunnelError('REMOTE_EXEC', `ssh: the bastion refused to run "${command}": ${errorMessage(err)}`, {
            cause: err,
          }),
        )
        return
      }
      let stdout = ''
      let stderr = ''
      let code: number | null = null
      stream.on('data', (d: Buffer) => {
        if (stdout.length < maxBytes) stdout += d.toString('utf8')
      })
      stream.stderr.on('data', (d: Buffer) => {
        if (stderr.length < maxBytes) stderr += d.toString('utf8')
      })
      stream.on('exit', (c: number | null) => (code = c))
      stream.on('close', () => finish(undefined, { code, stdout: stdout.slice(0, maxBytes), stderr }))
      stream.on('error', (e: Error) => finish(new TunnelError('REMOTE_EXEC', `ssh: exec: ${e.message}`, { cause: e })))
    })
  })
}
