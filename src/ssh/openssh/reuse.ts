/**
 * Reusing the user's own ControlMaster (ControlMaster/ControlPath in their ssh config): no
 * second login, so a 2FA bastion asks once. We never stop such a master.
 *
 * Two hazards, both handled here:
 *  - A control socket is a door to the user's SSH identity and to our plaintext: only a socket
 *    that is ours (owner = our uid, a socket, not a symlink) in a directory others cannot write
 *    to (or a sticky one) is used; the master itself checks our uid too (getpeereid).
 *  - OpenSSH kills the whole master when a proxy-mode client disconnects while the master holds a
 *    half-made proxy channel (every refused channel open leaves one: channels.c
 *    channel_proxy_upstream frees nothing on OPEN_FAILURE, and channel_free then sends a CLOSE
 *    with no remote id: fatal). So our proxy connection must outlive us: a keeper — a detached
 *    `sh` holding a copy of the socket — waits until we end; if we end cleanly with no such
 *    channel it exits at once, otherwise it drains the socket (`cat >/dev/null`) until the
 *    master itself exits, so the master never sees the disconnect that would kill it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import type net from 'node:net'
import * as path from 'node:path'
import type { Writable } from 'node:stream'
import { MuxClient } from './mux-client'

/** Why a configured ControlPath was not used (for -v), or the live master's pid. */
export type ReuseCheck = { ok: true; pid: number } | { ok: false; why: string }

/** Whether `p` may be trusted as the user's control socket (pure over lstat results). */
export function checkControlSocket(p: string, uid: number, lstat: (p: string) => fs.Stats = fs.lstatSync): string | undefined {
  let st: fs.Stats
  try {
    st = lstat(p)
  } catch {
    return 'no master is running (no socket)'
  }
  if (!st.isSocket()) return `${p} is not a socket`
  if (st.uid !== uid) return `${p} belongs to uid ${st.uid}, not to us`
  let dir: fs.Stats
  try {
    dir = lstat(path.dirname(p))
  } catch {
    return `cannot inspect ${path.dirname(p)}`
  }
  const writableByOthers = (dir.mode & 0o022) !== 0
  const sticky = (dir.mode & 0o1000) !== 0
  if (!dir.isDirectory()) return `${path.dirname(p)} is not a directory`
  if (dir.uid !== uid && dir.uid !== 0) return `${path.dirname(p)} belongs to uid ${dir.uid}`
  if (writableByOthers && !sticky) return `${path.dirname(p)} is writable by others`
  return undefined
}

/** Is there a live master of ours at the user's ControlPath? (a mux alive check, 2 s bound) */
export async function checkUserMaster(controlPath: string, uid: number): Promise<ReuseCheck> {
  const bad = checkControlSocket(controlPath, uid)
  if (bad) return { ok: false, why: bad }
  try {
    const mux = await MuxClient.connect(controlPath, 2000)
    try {
      return { ok: true, pid: await mux.alive() }
    } finally {
      mux.close()
    }
  } catch (e) {
    return { ok: false, why: `the master does not answer (${(e as Error).message})` }
  }
}

/**
 * The user's ControlPath from `ssh -G` output keys (controlpath is expanded there), or
 * undefined when multiplexing is off.
 */
export function userControlPath(raw: ReadonlyMap<string, readonly string[]>): string | undefined {
  const p = raw.get('controlpath')?.[0]
  const master = raw.get('controlmaster')?.[0]?.toLowerCase()
  if (!p || p === 'none') return undefined
  // ControlMaster no with a ControlPath still means "use a master if one runs": that is how
  // `ssh -S` clients are configured. Only the path matters for reuse.
  void master
  return p
}

/** The keeper of a proxy connection to a master that is not ours (see the file comment). */
export class Keeper {
  private readonly child: ChildProcess
  private readonly control: Writable

  constructor(socket: net.Socket) {
    // The descriptor number, not the Socket object: given a stream, child_process stops
    // reading it in this process (it assumes the child takes it over); a number is just
    // duplicated into the child.
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
    if (typeof fd !== 'number' || fd < 0) throw new Error('keeper: the socket has no descriptor')
    const script = 'IFS= read -r z <&3; [ "$z" = done ] && exit 0; exec cat >/dev/null'
    this.child = spawn('/bin/sh', ['-c', script], {
      // The socket as stdin (a duplicate of our descriptor), a pipe from us as fd 3.
      stdio: [fd, 'ignore', 'ignore', 'pipe'],
      detached: true, // its own session: Ctrl-C and hangups of our terminal do not reach it
      env: { PATH: '/usr/bin:/bin' },
    })
    this.control = this.child.stdio[3] as Writable
    this.control.on('error', () => {})
    this.child.on('error', () => {})
    this.child.unref()
    ;(this.child.stdio[3] as unknown as { unref?: () => void }).unref?.()
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  /** We are ending cleanly and left nothing half-made in the master: the keeper may go. */
  release(): void {
    this.control.end('done\n')
  }
}
