import { type TunnelError, errorMessage } from '../errors'
import { type Logger, createLogger, levelFromFlags } from '../observe/logger'
import { ControlServer } from '../status/control-server'
import { limitRepeats } from '../observe/log-limiter'
import type { TunnelArgs } from './args'
import { writePidfile } from './pidfile'
import { notifyParentUp, runInBackground, isBackgroundChild } from './background'
import { runCommand } from './exec-command'
import { briefSnapshot, buildSnapshot, snapshotForStatus } from '../tunnel/status-snapshot'
import { planTunnel } from '../tunnel/plan'
import { TunnelRuntime } from '../tunnel/runtime'
import { StatusLine } from '../status/status-line'
import { rememberProblems } from '../observe/last-problem'
import { LogFile } from '../observe/log-file'
import { logFileFor } from './log-setup'
import { checkClashes, clashes } from './other-instances'
import { instancesHere } from './status'

/**
 * The main command. Order matters for "nothing left behind": validate everything offline
 * (planTunnel), then bring the runtime up (helper, SSH, DNS, proxies, listener, rules); any
 * failure unwinds exactly what was done. Then either run `exec`'s command, go to the
 * background (-f), or wait for a signal.
 */
export async function runTunnel(args: TunnelArgs, version: string): Promise<number> {
  // -f: the parent starts a copy of itself, waits until it is up (or failed), and leaves.
  // It gets --proxy-auth's value as $SUBNET_TUNNEL_PROXY_AUTH: that variable left our environment
  // at start-up; an explicit --proxy-auth on the command line wins over it in the copy anyway.
  if (args.background && !isBackgroundChild()) {
    return runInBackground(args.proxyAuth !== undefined ? { SUBNET_TUNNEL_PROXY_AUTH: args.proxyAuth } : {})
  }

  // On a terminal, a live status line sits below the log; log lines clear it first.
  let statusLine: StatusLine | undefined
  // Once a background copy is detached its stderr leads nowhere: messages are dropped.
  let detached = false
  const plainWrite = (line: string): void => {
    if (!detached) process.stderr.write(line + '\n')
  }
  // --log-file, or -f's default: every line also goes there, with a timestamp.
  const logPath = logFileFor(args)
  const file = logPath !== undefined ? LogFile.open(logPath, { makeDir: args.logFile === undefined }) : undefined
  const stamped = !process.stderr.isTTY
  // Repeated per-connection warnings (refused, prohibited, timeouts, EMFILE) are rate-limited;
  // the newest warning or error is kept for `status`.
  const log = rememberProblems(limitRepeats(createLogger({
    level: levelFromFlags(args.verbose, args.quiet),
    timestamps: stamped,
    write: (line) => {
      file?.write(stamped ? line : `${new Date().toISOString()} ${line}`)
      if (statusLine) statusLine.wrapWrite(plainWrite)(line)
      else plainWrite(line)
    },
  })))
  const plan = await planTunnel(args)
  // Another instance here capturing the same subnets: refused without --force (other-instances.ts).
  if (plan.capture) {
    const ours = plan.includes.map((i) => i.cidr)
    checkClashes(clashes((await instancesHere(false, true)).here, ours), ours, args.force, log)
  }
  const rt = new TunnelRuntime(plan, log)
  if (file) rt.onStop('close the log file', async () => file.close())
  const extras = { profile: args.profile, logFile: logPath, lastProblem: () => log.lastProblem() }
  try {
    await rt.start({ auditLog: args.auditLog, auditDns: args.auditDns })
    const control = new ControlServer({
      instanceId: rt.instanceId,
      snapshot: ({ brief }) => (brief ? briefSnapshot(rt, version, extras) : snapshotForStatus(rt, version, extras)),
      // `subnet-tunnel stop`: the same orderly stop as SIGTERM (exec mode included).
      onStop: () => {
        log.info('cli', 'stop requested (subnet-tunnel stop)')
        process.kill(process.pid, 'SIGTERM')
      },
      log,
    })
    try {
      await control.start()
      rt.onStop('remove control socket', () => control.stop())
    } catch (e) {
      // Status is a convenience: a tunnel must not fail because /tmp is odd.
      log.warn('ctl', `no control socket (status will not list this instance): ${errorMessage(e)}`)
    }
    if (args.pidfile) {
      const pf = writePidfile(args.pidfile)
      rt.onStop('remove pidfile', async () => pf.remove())
    }
    const up = rt.upLine() + (logPath !== undefined ? `, log ${logPath}` : '')
    file?.write(`${new Date().toISOString()} ${up}`)
    if (isBackgroundChild()) {
      notifyParentUp(args.quiet < 2 ? up : '')
      detached = true
    } else if (args.quiet < 2) process.stderr.write(up + '\n')
    if (process.stderr.isTTY && !args.exec && !args.background && args.quiet === 0) {
      const line = new StatusLine({ stream: process.stderr, snapshot: () => buildSnapshot(rt, version, extras) })
      statusLine = line
      rt.onStop('clear the status line', async () => {
        line.stop()
        statusLine = undefined
      })
    }

    if (args.exec) {
      const code = await runCommand(args.exec, log, rt)
      await rt.stop()
      return code
    }
    const reason = await waitForStop(rt, log, args.background)
    log.info('cli', `stopping (${reason})`)
    await rt.stop()
    // A failure (the helper died, the TUN engine gave up) is not a requested stop.
    return reason.startsWith('helper') || reason.startsWith('fatal') ? 1 : 0
  } catch (e) {
    await rt.stop()
    throw e
  }
}

function waitForStop(rt: TunnelRuntime, log: Logger, background: boolean): Promise<string> {
  return new Promise((resolve) => {
    let stopping = false
    const stop = (why: string): void => {
      if (stopping) {
        // A second Ctrl-C: leave now. Closing our end of the helper's stdin makes it revert.
        log.warn('cli', 'forced exit; the helper removes the rules as it exits')
        process.exit(130)
      }
      stopping = true
      resolve(why)
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
    // In the background there is no terminal to hang up: SIGHUP must not end the tunnel.
    if (!background) process.on('SIGHUP', () => stop('SIGHUP'))
    else process.on('SIGHUP', () => log.verbose('cli', 'SIGHUP ignored in the background'))
    // A part the tunnel cannot do without gave up (the TUN engine, its device): stop in order.
    const fatal = (e: TunnelError): void => {
      log.error('route', `${e.message}${e.hint ? ` (${e.hint})` : ''}`)
      if (!stopping) stop(`fatal: ${e.message}`)
    }
    if (rt.fatal) fatal(rt.fatal)
    else rt.once('fatal', fatal)
    rt.helper?.onExit((info) => {
      // A signal to the whole group (SIGTERM from systemd, a hangup) reaches the helper too; it
      // reverts and exits on its own. Our own handler may run just after its exit is seen.
      setTimeout(() => {
        if (stopping) return
        const rules = info.clean ? '; it removed the rules first' : ''
        log.error('helper', `privileged helper exited unexpectedly (${info.reason})${rules}; stopping`)
        stop(`helper exited: ${info.reason}`)
      }, 200)
    })
  })
}
