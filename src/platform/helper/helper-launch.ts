import * as fs from 'node:fs'
import * as path from 'node:path'
import { SAFE_INSTALL_HINT, type SafetyVerdict } from './install-safety'
import { errorMessage } from '../../errors'
import { NO_ROOT_NEEDED } from './sudo-failure'
import { assertSudoersWords, sudoersRule } from './sudoers'
import { TUN_GRANT_FLAG } from './tun-grant'

/** How to start the helper: argv, and whether sudo is involved (and may prompt). */
export interface HelperLaunch {
  readonly command: string
  readonly args: readonly string[]
  readonly viaSudo: boolean
  /** sudo may ask for a password on the terminal: wait longer for the helper to come up. */
  readonly interactive: boolean
}

export interface LaunchInputs {
  /** process.getuid() */
  readonly uid: number
  /** Whether a terminal is available for a sudo password prompt. */
  readonly tty: boolean
  /** process.execPath: the same node runs the helper. */
  readonly execPath: string
  /** Absolute path of helper-main.js. */
  readonly helperPath: string
  /** Ask for the tun grant (--method tun): the helper gets `--allow-tun` (tun-grant.ts). */
  readonly allowTun?: boolean
}

/** Prompt shown by sudo; says why a password is wanted. */
export const SUDO_PROMPT = '[sudo] password for %u (subnet-tunnel needs root for firewall rules): '

/**
 * Pure: root runs the helper directly; anyone else goes through sudo — `sudo -n` without a
 * terminal (fail at once instead of waiting for a password nobody can type), plain sudo with one
 * (sudo reads the password from /dev/tty, so our piped stdio does not interfere). `--` keeps
 * paths that start with '-' from being read as sudo options.
 */
export function helperLaunchArgv(i: LaunchInputs): HelperLaunch {
  const helper = [i.helperPath, ...(i.allowTun === true ? [TUN_GRANT_FLAG] : [])]
  if (i.uid === 0) return { command: i.execPath, args: helper, viaSudo: false, interactive: false }
  const args = i.tty
    ? ['-p', SUDO_PROMPT, '--', i.execPath, ...helper]
    : ['-n', '--', i.execPath, ...helper]
  return { command: 'sudo', args, viaSudo: true, interactive: i.tty }
}

/**
 * helper-main.js next to this file (dist/platform/helper when running compiled); inside the CLI
 * bundle (dist/cli/main.bundle.js, scripts/bundle.js) this code's directory is dist/cli, and the
 * helper the same dist/platform/helper/helper-main.js (never bundled: the sudoers rule names
 * it); when running from src/ under a TS loader (tests), the compiled copy in dist/platform/helper.
 */
export function helperScriptPath(dir: string = __dirname): string {
  const candidates = [
    path.join(dir, 'helper-main.js'),
    ...(path.basename(dir) === 'cli' ? [path.resolve(dir, '../platform/helper/helper-main.js')] : []),
    path.resolve(dir, '../../../dist/platform/helper/helper-main.js'),
  ]
  return candidates.find((p) => fs.existsSync(p)) ?? candidates[0]
}

/** The package root (package.json, dist/, node_modules/) of a helper-main.js at dist/platform/helper/. */
export function packageRootOf(helperPath: string): string {
  return path.resolve(path.dirname(helperPath), '..', '..', '..')
}

/**
 * The hint of NEED_ROOT: the sudoers rule only when the install is safe for one (see
 * install-safety.ts); otherwise why not, and what to do instead. tun: its own rule.
 */
export function needRootHint(user: string, l: Pick<LaunchInputs, 'execPath' | 'helperPath'>, verdict: SafetyVerdict, tun = false): string {
  return `${NO_ROOT_NEEDED}; for subnets, ${subnetsHint(user, l, verdict, tun)}`
}

function subnetsHint(user: string, l: Pick<LaunchInputs, 'execPath' | 'helperPath'>, verdict: SafetyVerdict, tun: boolean): string {
  if (!verdict.safe) {
    return `run with sudo. A NOPASSWD rule would be unsafe here: ${verdict.path} ${verdict.reason}, so the rule would give root to whoever can change it; ${SAFE_INSTALL_HINT}`
  }
  try {
    assertSudoersWords(user, l)
  } catch (e) {
    return `run with sudo (no sudoers rule can name this install as it is: ${errorMessage(e)})`
  }
  if (tun) {
    return `run with sudo, or have the tun rule added — the ordinary rule does not grant --method tun (\`subnet-tunnel sudoers\` explains what it grants): ${sudoersRule(user, l, true)}`
  }
  return `run with sudo, or add a NOPASSWD rule (\`subnet-tunnel sudoers\` prints it with what it grants): ${sudoersRule(user, l)}`
}

/**
 * Variables the helper (or sudo, which starts it) may see — DESIGN: "children get only the
 * environment they need". Locale for messages, SUDO_* (sudo's own, when we already run under sudo:
 * the helper reads SUDO_UID to know who asked), the state directory override, and PATH for
 * finding sudo. Nothing else: not a credential, not NODE_OPTIONS for a root process.
 */
const HELPER_ENV = /^(?:PATH|LANG|LANGUAGE|LC_[A-Z_]+|TERM|TZ|SUDO_UID|SUDO_GID|SUDO_USER|SUBNET_TUNNEL_STATE_DIR)$/

/** The allow-listed part of env, for the helper. */
export function helperEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && HELPER_ENV.test(k)) out[k] = v
  return out
}
