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
import type { Logger } from '../../observe/logger'
import type { SshConnection, SshEngine } from '../engine'
import { masterArgv, type OpensshVersion } from './master-argv'
import { OpensshSession } from './session'

export interface OpensshEngineOptions {
  readonly ssh: string
  readonly version: OpensshVersion
  readonly setpriv?: string
  /** Private directory (0700, ours) for control sockets; the caller creates and removes it. */
  readonly controlDir: string
  /** Whether ssh may prompt on the terminal (now: start, or a reconnect). */
  readonly interactive: () => boolean
  readonly log: Logger
  /** Environment of the masters (secrets already removed by the CLI). */
  readonly env?: NodeJS.ProcessEnv
  /** Try the user's ControlPath first (default true). */
  readonly reuse?: boolean
}

export function opensshEngine(o: OpensshEngineOptions): SshEngine {
  /** Remotes whose first connection has been made: the pool's next ones get masters of ours. */
  const seen = new Set<string>()
  return {
    name: 'openssh',
    connection(r): SshConnection {
      const first = !seen.has(r.name)
      seen.add(r.name)
      return new OpensshSession({
        ssh: o.ssh,
        controlDir: o.controlDir,
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
