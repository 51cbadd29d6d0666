/**
 * One live path to an OpenSSH master: the proxy-mode connection we speak over, and whose the
 * master is. Either ours (we started it, it ends with us) or the user's (found at their
 * ControlPath; never stopped by us, and guarded by a keeper — see reuse.ts).
 */
import { randomBytes } from 'node:crypto'
import * as path from 'node:path'
import type { Logger } from '../../observe/logger'
import { Master } from './master'
import { mapMasterOutcome, type MasterOutcome } from './master-errors'
import { MuxClient } from './mux-client'
import { ProxyConnection } from './proxy-connection'
import type { WindowBudget } from './receive-window'
import { Keeper } from './reuse'
import { TunnelError } from '../../errors'

export interface Link {
  readonly conn: ProxyConnection
  /** The control socket (for control requests such as -R). */
  readonly controlPath: string
  readonly pid: number | undefined
  /** The user's master, reused. */
  readonly reused: boolean
  /** Calls `onLost` once when the master or the connection goes away (not after stop()). */
  watch(onLost: (why: TunnelError) => void): void
  /** Ends this link: ours → the master stops; reused → our channels close, the master stays. */
  stop(): Promise<void>
  /**
   * The network changed: fails every channel with `why` at once (their clients get a reset),
   * then ends the link like stop() (the user's master stays). Resolves when released.
   */
  drop(why: TunnelError): Promise<void>
}

export interface OwnMasterSpec {
  readonly ssh: string
  readonly args: (socketPath: string) => string[]
  readonly controlDir: string
  readonly interactive: boolean
  readonly destination: string
  readonly log: Logger
  readonly setpriv?: string
  readonly env?: NodeJS.ProcessEnv
  /** Abandons the start (the master is stopped): the network changed while it dialled. */
  readonly signal?: AbortSignal
}

/** Enters proxy mode on a control socket. */
async function proxyOn(controlPath: string, budget: WindowBudget, log: Logger): Promise<{ conn: ProxyConnection; pid: number }> {
  const mux = await MuxClient.connect(controlPath)
  try {
    const pid = await mux.alive()
    const { socket, leftover } = await mux.proxy()
    const conn = new ProxyConnection(socket, budget, log)
    conn.feed(leftover)
    return { conn, pid }
  } catch (e) {
    mux.close()
    throw e
  }
}

/** Starts a master of ours and enters proxy mode on it. */
export async function ownLink(spec: OwnMasterSpec, budget: WindowBudget): Promise<Link> {
  const socketPath = path.join(spec.controlDir, `m-${randomBytes(4).toString('hex')}`)
  const master = new Master({
    ssh: spec.ssh,
    args: spec.args(socketPath),
    socketPath,
    interactive: spec.interactive,
    destination: spec.destination,
    log: spec.log,
    setpriv: spec.setpriv,
    env: spec.env,
  })
  master.on('line', (l: string) => spec.log.verbose('ssh', `ssh: ${l}`))
  // A master still dialling over a path that is gone would wait for TCP's SYN retries.
  const abandon = (): void => void master.stop(0)
  if (spec.signal?.aborted) throw new TunnelError('NOT_CONNECTED', 'ssh: connecting was cancelled')
  spec.signal?.addEventListener('abort', abandon, { once: true })
  try {
    await master.start()
  } finally {
    spec.signal?.removeEventListener('abort', abandon)
  }
  let conn: ProxyConnection
  try {
    conn = (await proxyOn(socketPath, budget, spec.log)).conn
  } catch (e) {
    await master.stop()
    throw e
  }
  let stopping = false
  return {
    conn,
    controlPath: socketPath,
    pid: master.pid,
    reused: false,
    watch(onLost) {
      let fired = false
      let deferred = false
      const lost = (why: TunnelError): void => {
        if (fired || stopping) return
        fired = true
        conn.close(why)
        void master.stop()
        onLost(why)
      }
      master.once('exit', (o: MasterOutcome) => {
        // Ctrl-C (or a hang-up) on the terminal reaches the master too — it shares our process
        // group so that it can prompt there — and it may exit before we have handled the same
        // signal: give our shutdown a moment before calling that a lost connection.
        if (byTerminalSignal(o)) {
          deferred = true
          setTimeout(() => lost(mapMasterOutcome(o)), TERMINAL_SIGNAL_GRACE_MS).unref()
        } else lost(mapMasterOutcome(o))
      })
      conn.once('close', () => {
        // The master normally exits right after; its stderr says why. Give it a moment.
        setTimeout(() => {
          if (!deferred) lost(new TunnelError('SSH_CONNECT', 'ssh: the OpenSSH master closed the connection'))
        }, 200).unref()
      })
    },
    async stop() {
      stopping = true
      // The master first: it sends the server a disconnect; then our end of the socket.
      await master.stop()
      conn.close(new TunnelError('NOT_CONNECTED', 'ssh: the tunnel is stopping'))
    },
    async drop(why) {
      stopping = true
      // Channels first (their clients are reset now), then the master: a goodbye over a dead
      // path must not hold anyone up.
      conn.close(why)
      await master.stop(500)
    },
  }
}

/** Uses the user's live master at controlPath (already checked by checkUserMaster). */
export async function reusedLink(controlPath: string, budget: WindowBudget, log: Logger): Promise<Link> {
  const { conn, pid } = await proxyOn(controlPath, budget, log)
  // Before any channel exists: from now on our end of the connection outlives us if it must.
  let keeper: Keeper
  try {
    keeper = new Keeper(conn.socket)
  } catch (e) {
    conn.close()
    throw e
  }
  let stopping = false
  return {
    conn,
    controlPath,
    pid,
    reused: true,
    watch(onLost) {
      conn.once('close', (err?: Error) => {
        if (stopping) return
        onLost(new TunnelError('SSH_CONNECT', `ssh: your ControlMaster (pid ${pid}) went away${err ? `: ${err.message}` : ''}`))
      })
    },
    async stop() {
      stopping = true
      await release()
    },
    async drop(why) {
      stopping = true
      conn.failChannels(why)
      await release()
    },
  }

  async function release(): Promise<void> {
    await conn.quiesce(2000)
    const left = conn.stats.halfMade + conn.pendingOpens
    if (left === 0) keeper.release()
    else log.verbose('ssh', `openssh: keeping the connection to your ControlMaster open (keeper pid ${keeper.pid}): it holds ${left} refused channel(s) that would make OpenSSH exit if we disconnected`)
    conn.close(new TunnelError('NOT_CONNECTED', 'ssh: the tunnel is stopping'))
  }
}

/** How long a master ended by SIGINT/SIGHUP/SIGTERM waits before it counts as lost (ms). */
export const TERMINAL_SIGNAL_GRACE_MS = 500

/** The master ended by a signal the terminal sends to the whole foreground group (ssh reports its own as "Killed by signal N."). */
export function byTerminalSignal(o: MasterOutcome): boolean {
  if (o.signal === 'SIGINT' || o.signal === 'SIGHUP' || o.signal === 'SIGTERM') return true
  return o.stderr.some((l) => /^Killed by signal (1|2|15)\.$/.test(l.trim()))
}
