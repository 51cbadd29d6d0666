import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { Duplex } from 'node:stream'
import type { SshHostConfig } from '../../config/ssh-config-types'
import { TunnelError } from '../../errors'
import type { Logger } from '../../observe/logger'
import { mapConnectError } from './errors-map'

/** The byte stream an SSH client runs over, plus what we know if it broke early. */
export interface Transport {
  readonly sock: Duplex
  /** A better error than ssh2's, if the transport itself failed (e.g. ProxyCommand exited). */
  explain(): Promise<TunnelError | undefined>
  /** Tears the transport down (kills a ProxyCommand). Idempotent. */
  close(): void
}

/** OpenSSH uses the system's TCP connect timeout when ConnectTimeout is unset; we bound it. */
export const DEFAULT_CONNECT_TIMEOUT_S = 30

export function connectTimeoutMs(cfg: SshHostConfig): number {
  const s = cfg.connectTimeout && cfg.connectTimeout > 0 ? cfg.connectTimeout : DEFAULT_CONNECT_TIMEOUT_S
  return s * 1000
}

/** Opens a TCP connection to cfg.hostName:cfg.port, or runs cfg.proxyCommand. */
export function openTransport(cfg: SshHostConfig, log: Logger, signal?: AbortSignal): Promise<Transport> {
  if (cfg.proxyCommand) return Promise.resolve(proxyCommand(cfg, log))
  return tcp(cfg, log, signal)
}

function tcp(cfg: SshHostConfig, log: Logger, signal?: AbortSignal): Promise<Transport> {
  const ms = connectTimeoutMs(cfg)
  log.debug('ssh', `connecting to ${cfg.hostName} port ${cfg.port}`)
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: cfg.hostName, port: cfg.port })
    const fail = (e: unknown): void => {
      cleanup()
      sock.destroy()
      reject(mapConnectError(e, { host: cfg.hostName, port: cfg.port }))
    }
    const onAbort = (): void => fail(new TunnelError('NOT_CONNECTED', 'ssh: connect aborted'))
    const timer = setTimeout(() => fail(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), ms)
    const cleanup = (): void => {
      clearTimeout(timer)
      sock.off('error', fail)
      signal?.removeEventListener('abort', onAbort)
    }
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    sock.once('error', fail)
    sock.once('connect', () => {
      cleanup()
      // SSH carries interactive and request/response traffic: Nagle only adds latency here.
      sock.setNoDelay(true)
      sock.setKeepAlive(true, 60_000)
      resolve({ sock, explain: async () => undefined, close: () => sock.destroy() })
    })
  })
}

/**
 * Runs the user's ProxyCommand with `exec` through /bin/sh, exactly like OpenSSH
 * (sshconnect.c: "exec %s"), so the shell is replaced and killing our child kills the command.
 */
function proxyCommand(cfg: SshHostConfig, log: Logger): Transport {
  const cmd = cfg.proxyCommand!
  const shell = fs.existsSync('/bin/sh') ? '/bin/sh' : 'sh'
  log.debug('ssh', `ProxyCommand for ${cfg.alias}: ${cmd}`)
  const child = spawn(shell, ['-c', `exec ${cmd}`], { stdio: ['pipe', 'pipe', 'pipe'] })
  let lastLine = ''
  let exit: { code: number | null; signal: string | null } | undefined
  let spawnError: Error | undefined
  const exited = new Promise<void>((resolve) => {
    // 'close' rather than 'exit': by then stderr is fully read, so lastLine is complete.
    child.once('close', (code, sig) => {
      exit = { code, signal: sig }
      resolve()
    })
    child.once('error', (e) => {
      spawnError = e
      resolve()
    })
  })
  let buf = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    buf += d
    const lines = buf.split('\n')
    buf = lines.pop() ?? ''
    for (const l of lines) if (l.trim()) log.debug('ssh', `ProxyCommand: ${(lastLine = l.trim())}`)
    if (buf.trim()) lastLine = buf.trim()
  })
  const sock = new ChildDuplex(child)
  return {
    sock,
    async explain() {
      // ssh2 usually notices the closed pipe before node reports the exit: give it a moment.
      await Promise.race([exited, new Promise((r) => setTimeout(r, 1000).unref())])
      if (spawnError) {
        return new TunnelError('SSH_CONNECT', `ssh: cannot run ProxyCommand for ${cfg.alias}: ${spawnError.message}`, { cause: spawnError })
      }
      if (!exit) return undefined
      const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`
      return new TunnelError('SSH_CONNECT', `ssh: ProxyCommand for ${cfg.alias} ${how}${lastLine ? `: ${lastLine}` : ''}`, {
        hint: `run the command by hand to see why: ${cmd}`,
      })
    },
    close() {
      sock.destroy()
    },
  }
}

/** The child's stdout (read side) and stdin (write side) as one Duplex for ssh2's `sock`. */
class ChildDuplex extends Duplex {
  constructor(private readonly child: ChildProcess) {
    super()
    const out = child.stdout!
    out.on('data', (d: Buffer) => {
      if (!this.push(d)) out.pause()
    })
    out.on('end', () => this.push(null))
    // EPIPE after the command died: the exit status explains it better, see explain().
    child.stdin!.on('error', () => {})
    out.on('error', () => {})
  }

  override _read(): void {
    this.child.stdout!.resume()
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.child.stdin!.destroyed) return cb()
    this.child.stdin!.write(chunk, () => cb())
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.child.stdin!.end()
    cb()
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.child.stdin!.destroy()
    this.child.stdout!.destroy()
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM')
    cb(err)
  }
}
