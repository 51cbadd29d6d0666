/**
 * The argv of the OpenSSH ControlMaster we start (pure, unit-tested).
 *
 * Order matters: ssh keeps the FIRST value it sees for an option (command line before config
 * files, and among -o in order). So:
 *  1. what must hold for the engine to work comes first and cannot be overridden by the user's
 *     -o or config: -M once (twice means "ask"), our private -S, no ControlPersist (the master
 *     lives exactly as long as we do), no forwards from the config (ClearAllForwardings: a
 *     LocalForward in ~/.ssh/config must not bind ports behind the user's back), BatchMode
 *     without a terminal (never a prompt nobody can answer);
 *  2. then the user's own -F/-p/-l/-i/-J/-o, exactly as for `ssh -G` (the same request);
 *  3. then our defaults the user may override (keepalive 15 s × 3, as the built-in engine).
 */
import type { SshRequest } from '../../config/ssh-config-types'
import { sshGArgs } from '../../config/ssh-config'
import { parseSshDestination } from '../../config/ssh-destination'

/** An OpenSSH version as `ssh -V` prints it (OpenSSH_9.2p1 → 9.2). */
export interface OpensshVersion {
  readonly major: number
  readonly minor: number
}

/** The oldest OpenSSH with mux proxy mode (MUX_C_PROXY, 7.4). */
export const MIN_VERSION: OpensshVersion = { major: 7, minor: 4 }

export function atLeast(v: OpensshVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor)
}

/** Parses `ssh -V` output ("OpenSSH_9.2p1 Debian-2, OpenSSL 3.0.11 …"); undefined if not OpenSSH. */
export function parseSshVersion(text: string): OpensshVersion | undefined {
  const m = /OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)/.exec(text)
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined
}

export interface MasterArgvInput {
  readonly request: SshRequest
  readonly socketPath: string
  readonly version: OpensshVersion
  /** A terminal is available for ssh's own prompts (passphrase, password, OTP, host key). */
  readonly interactive: boolean
  /** Effective keepalive (`ssh -G` plus our 15 s default): passed unless the user gave -o. */
  readonly serverAliveInterval: number
  readonly serverAliveCountMax: number
}

/** The arguments after the ssh binary. */
export function masterArgv(i: MasterArgvInput): string[] {
  const forced = [
    '-M',
    '-S', i.socketPath,
    // No session, stdin from /dev/null: nothing on the server runs, nothing reads our stdin.
    '-N', '-n',
    '-o', 'ControlPersist=no',
    '-o', 'ClearAllForwardings=yes',
    '-o', 'EscapeChar=none',
    '-o', 'ExitOnForwardFailure=no',
  ]
  // `ForkAfterAuthentication yes` (8.7+, the config form of -f) would detach the master from us.
  if (atLeast(i.version, 8, 7)) forced.push('-o', 'ForkAfterAuthentication=no')
  if (!i.interactive) forced.push('-o', 'BatchMode=yes')
  // The user's part: the same arguments `ssh -G` resolved the configuration with, minus -G/-T
  // and the destination, which goes last.
  const dest = parseSshDestination(i.request.destination)
  const user = sshGArgs(i.request, dest, dest.port ?? i.request.port)
  const sep = user.indexOf('--')
  const userOpts = user.slice(2, sep) // drop '-G', '-T'
  const defaults = [
    '-o', `ServerAliveInterval=${i.serverAliveInterval}`,
    '-o', `ServerAliveCountMax=${i.serverAliveCountMax}`,
  ]
  return [...forced, ...userOpts, ...defaults, '--', dest.host]
}
