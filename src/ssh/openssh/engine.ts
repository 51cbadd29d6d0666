/**
 * The OpenSSH engine: the user's own `ssh` carries the tunnel (ControlMaster, mux proxy mode).
 * OpenSSH does resolution, ProxyJump/ProxyCommand, host keys (certificates and CAs included),
 * authentication (certificates, FIDO, GSSAPI, PKCS#11, 2FA prompts on the terminal), KEX and
 * crypto; we speak the connection layer: our windows, exact EOF/RST, byte accounts.
 *
 * A live ControlMaster of the user's (their ControlPath) carries the first connection to a
 * bastion: no second login. More connections of the pool (a bastion out of descriptors) are
 * masters of ours: one master is one sshd process, whose limits are what made the pool grow.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../../errors'
import type { Logger } from '../../observe/logger'
import type { SshConnection, SshEngine } from '../engine'
import { masterArgv, type OpensshVersion } from './master-argv'
import { OpensshSession } from './session'

export interface OpensshEngineOptions {
  readonly ssh: string
  readonly version: OpensshVersion
  readonly setpriv?: string
  /** Where the private socket directory goes; default $XDG_RUNTIME_DIR, else the temp directory. */
  readonly runtimeDir?: string
  /** Whether ssh may prompt on the terminal (now: start, or a reconnect). */
  readonly interactive: () => boolean
  readonly log: Logger
  /** Environment of the masters (secrets already removed by the CLI). */
  readonly env?: NodeJS.ProcessEnv
  /** Try the user's ControlPath first (default true). */
  readonly reuse?: boolean
}

/**
 * The private directory for control sockets: mkdtemp (a random name, mode 0700, ours — never a
 * guessable path in a shared directory), checked after creation. Removed by close().
 */
export function makeControlDir(base?: string): string {
  const candidates = [base, process.env.XDG_RUNTIME_DIR, os.tmpdir()].filter((d): d is string => !!d && path.isAbsolute(d))
  let last: unknown
  for (const dir of candidates) {
    try {
      const d = fs.mkdtempSync(path.join(dir, 'subnet-tunnel-'))
      const st = fs.lstatSync(d)
      if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? st.uid) || (st.mode & 0o077) !== 0) {
        fs.rmSync(d, { recursive: true, force: true })
        throw new Error(`${d} is not a private directory of ours`)
      }
      return d
    } catch (e) {
      last = e
    }
  }
  throw new TunnelError('SSH_CONNECT', `openssh: cannot create a private directory for the control socket: ${errorMessage(last)}`, {
    hint: 'check that $XDG_RUNTIME_DIR or $TMPDIR is writable, or use --ssh-engine builtin',
  })
}

export function opensshEngine(o: OpensshEngineOptions): SshEngine {
  /** Remotes whose first connection has been made: the pool's next ones get masters of ours. */
  const seen = new Set<string>()
  let controlDir: string | undefined
  return {
    name: 'openssh',
    async close() {
      if (controlDir) fs.rmSync(controlDir, { recursive: true, force: true })
      controlDir = undefined
    },
    connection(r): SshConnection {
      const first = !seen.has(r.name)
      seen.add(r.name)
      controlDir ??= makeControlDir(o.runtimeDir)
      return new OpensshSession({
        ssh: o.ssh,
        controlDir,
        destination: r.name,
        userControlPath: first && o.reuse !== false ? r.target.controlPath : undefined,
        interactive: o.interactive,
        log: o.log,
        setpriv: o.setpriv,
        env: o.env,
        argsFor: (socketPath, interactive) =>
          masterArgv({
            request: r.request,
            socketPath,
            version: o.version,
            interactive,
            serverAliveInterval: r.target.serverAliveInterval,
            serverAliveCountMax: r.target.serverAliveCountMax,
          }),
      })
    },
  }
}
