/**
 * Runs one command on the bastion through a `session` channel on the proxy connection (exec
 * request, RFC 4254 §6.5) and collects its output, bounded — e.g. the bastion's
 * /etc/resolv.conf for --dns. Same contract as the built-in engine's runRemote: REMOTE_EXEC
 * when the server refuses the channel or the exec (a forwarding-only account), or times out;
 * a command that runs but fails resolves with its exit status for the caller to judge.
 */
import { TunnelError, errorMessage } from '../../errors'
import type { Channel } from './channel'
import { OpenRefused, type ProxyConnection } from './proxy-connection'
import type { Reader } from './wire'

export interface ExecResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export async function execOverProxy(
  conn: ProxyConnection,
  command: string,
  opts: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const maxBytes = opts.maxBytes ?? 64 * 1024
  const deadline = Date.now() + timeoutMs
  const refused = (why: string, cause?: unknown): TunnelError =>
    new TunnelError('REMOTE_EXEC', `ssh: the bastion refused to run "${command}": ${why}`, { cause })
  let ch: Channel
  try {
    ch = await conn.openSession(timeoutMs)
  } catch (e) {
    if (e instanceof OpenRefused) throw refused(e.description || `channel refused (reason ${e.reasonCode})`, e)
    throw new TunnelError('REMOTE_EXEC', `ssh: "${command}" on the bastion: ${errorMessage(e)}`, { cause: e })
  }
  return new Promise((resolve, reject) => {
    let done = false
    let stdout = ''
    let stderr = ''
    let code: number | null = null
    const finish = (err?: TunnelError): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (!ch.destroyed) ch.destroy()
      if (err) reject(err)
      else resolve({ code, stdout: stdout.slice(0, maxBytes), stderr: stderr.slice(0, maxBytes) })
    }
    const timer = setTimeout(
      () => finish(new TunnelError('REMOTE_EXEC', `ssh: "${command}" on the bastion timed out after ${timeoutMs} ms`)),
      Math.max(0, deadline - Date.now()),
    )
    ch.on('data', (d: Buffer) => {
      if (stdout.length < maxBytes) stdout += d.toString('utf8')
    })
    ch.on('stderr', (d: Buffer) => {
      if (stderr.length < maxBytes) stderr += d.toString('utf8')
    })
    ch.on('request', (name: string, data: Reader) => {
      if (name === 'exit-status') {
        try {
          code = data.u32()
        } catch {
          /* malformed: leave it unknown */
        }
      }
    })
    ch.on('error', (e: Error) => finish(new TunnelError('REMOTE_EXEC', `ssh: exec: ${e.message}`, { cause: e })))
    ch.on('close', () => finish())
    ch.on('end', () => {
      // Nothing to send: end our side too, so both EOFs lead to CLOSE.
      if (!ch.writableEnded) ch.end()
    })
    conn.exec(ch, command).then((ok) => {
      if (!ok) finish(refused('exec request denied'))
      else ch.end() // no stdin for the command
    })
  })
}
