import * as os from 'node:os'
import { TunnelError } from '../errors'
import { helperScriptPath, packageRootOf } from '../platform/helper/helper-launch'
import { checkInstallSafety, realSafetyFs, SAFE_INSTALL_HINT, type SafetyFs } from '../platform/helper/install-safety'
import { sudoersDropIn } from '../platform/helper/sudoers'

export interface SudoersInputs {
  /** --user, if given. */
  readonly user?: string
  /** process.getuid() */
  readonly uid: number
  /** $SUDO_USER: under `sudo subnet-tunnel sudoers`, the rule is for the user who ran sudo. */
  readonly sudoUser?: string
  /** This process's user name. */
  readonly username: string
  readonly execPath: string
  readonly helperPath: string
  readonly version: string
  readonly sfs: SafetyFs
}

/**
 * `subnet-tunnel sudoers`: the commented /etc/sudoers.d drop-in for this install, or an
 * UNSAFE_INSTALL error that says which path would make the rule plain root, and why.
 */
export function sudoersText(i: SudoersInputs): string {
  const user = i.user ?? (i.uid === 0 && i.sudoUser ? i.sudoUser : i.username)
  if (user === 'root') {
    throw new TunnelError('USAGE', 'root needs no sudoers rule', { hint: 'name the user who will run subnet-tunnel: subnet-tunnel sudoers --user NAME' })
  }
  const packageRoot = packageRootOf(i.helperPath)
  const verdict = checkInstallSafety({ execPath: i.execPath, helperPath: i.helperPath, packageRoot }, i.sfs)
  if (!verdict.safe) {
    throw new TunnelError('UNSAFE_INSTALL', `no sudoers rule for this install: ${verdict.path} ${verdict.reason}, so a NOPASSWD rule would give root to whoever can change it`, {
      hint: SAFE_INSTALL_HINT,
    })
  }
  return sudoersDropIn(user, { execPath: i.execPath, helperPath: i.helperPath }, i.version)
}

/** Prints the drop-in for the running install; exit code 0 (errors are thrown). */
export function runSudoers(user: string | undefined, version: string): number {
  const uid = process.getuid?.() ?? 0
  const text = sudoersText({
    ...(user !== undefined && { user }),
    uid,
    ...(process.env.SUDO_USER !== undefined && { sudoUser: process.env.SUDO_USER }),
    username: os.userInfo().username,
    execPath: process.execPath,
    helperPath: helperScriptPath(),
    version,
    sfs: realSafetyFs(uid),
  })
  process.stdout.write(text)
  return 0
}
