import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import type { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import type { TunnelRuntime } from '../tunnel/runtime'
import type { ChildProcess } from 'node:child_process'
import type { Writable } from 'node:stream'

/** exec --only: has the helper put the waiting shell into the cgroup, then lets it exec the command. */
async function release(child: ChildProcess, rt: TunnelRuntime, log: Logger): Promise<void> {
  const gate = child.stdio[3] as Writable
  try {
    if (!child.pid || !rt.helper?.cgroupAdd) throw new Error('no privileged helper to move the command')
    await rt.helper.cgroupAdd(child.pid)
    gate.end('go\n')
  } catch (e) {
    // Never run it uncaptured: it stays unstarted and exits 126.
    log.error('cli', `exec --only: cannot put the command into its cgroup: ${e instanceof Error ? e.message : String(e)}`)
    gate.destroy()
  }
}

/**
 * `exec -- CMD ARGS…`: runs the command with the tunnel in place and returns its exit code
 * (128 + signal number when it was killed, as shells report it; 127 when it cannot be run).
 * Ctrl-C reaches the command through the terminal's process group; a SIGTERM or SIGHUP sent
 * to us is passed on, so `timeout 60 subnet-tunnel … exec -- job` stops the job too.
 */
export function runCommand(argv: readonly string[], log: Logger, rt: TunnelRuntime): Promise<number> {
  return new Promise((resolve) => {
    log.verbose('cli', `exec: ${argv.join(' ')}`)
    const env = { ...process.env, SUBNET_TUNNEL_INSTANCE: rt.instanceId }
    // exec --only: the command must be in the capture's cgroup before it runs a single
    // instruction, so it starts as a shell that waits for one line on fd 3, then execs it; the
    // helper moves that shell into the cgroup in between (its children follow).
    const only = rt.plan.execOnly === true
    const child = only
      ? spawn('/bin/sh', ['-c', 'read -r _ <&3 || exit 126; exec 3<&-; exec "$@"', argv[0], ...argv], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], env })
      : spawn(argv[0], argv.slice(1), { stdio: 'inherit', env })
    if (only) void release(child, rt, log)
    const forward = (sig: NodeJS.Signals) => () => void child.kill(sig)
    const handlers = { SIGTERM: forward('SIGTERM'), SIGHUP: forward('SIGHUP'), SIGINT: () => {} }
    for (const [sig, h] of Object.entries(handlers)) process.on(sig, h)
    // The tunnel itself failed (its TUN engine gave up): the command is stopped as by SIGTERM.
    const fatal = (e: TunnelError): void => {
      log.error('route', `${e.message}${e.hint ? ` (${e.hint})` : ''}`)
      child.kill('SIGTERM')
    }
    if (rt.fatal) fatal(rt.fatal)
    else rt.once('fatal', fatal)
    const done = (code: number): void => {
      for (const [sig, h] of Object.entries(handlers)) process.off(sig, h)
      rt.off('fatal', fatal)
      resolve(code)
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      log.error('cli', `exec: cannot run ${argv[0]}: ${e.code === 'ENOENT' ? 'command not found' : e.message}`)
      done(e.code === 'ENOENT' ? 127 : 126)
    })
    child.on('exit', (code, signal) => {
      if (signal) {
        const n = (constants.signals as Record<string, number>)[signal] ?? 0
        log.verbose('cli', `exec: ${argv[0]} killed by ${signal}`)
        done(128 + n)
      } else done(code ?? 1)
    })
  })
}
