/**
 * An unprivileged user (uid 65534, "nobody") for e2e tests that must not run as root: a home
 * with its own copy of the testbed's key, known_hosts and an ssh_config whose `bastion` alias
 * uses them. Run the CLI with `wrap: NOBODY` and `env: { HOME: dir }`; remove `dir` afterwards.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Testbed } from './testbed'

export const NOBODY_UID = 65534
/** Command prefix (inside the namespace) that drops to uid/gid 65534 with no groups. */
export const NOBODY = ['setpriv', '--reuid', String(NOBODY_UID), '--regid', String(NOBODY_UID), '--clear-groups']

export function makeUnprivilegedHome(tb: Testbed, prefix = 'st-e2e-user-'): { dir: string; sshConfig: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.chmodSync(dir, 0o755)
  const key = path.join(dir, 'id_ed25519')
  fs.copyFileSync(tb.env.sshKey, key)
  fs.copyFileSync(tb.env.knownHosts, path.join(dir, 'known_hosts'))
  const sshConfig = path.join(dir, 'ssh_config')
  fs.writeFileSync(
    sshConfig,
    `Host bastion\n  HostName ${tb.env.bastionIp}\n  User root\n  IdentityFile ${key}\n  IdentitiesOnly yes\n` +
      `  UserKnownHostsFile ${path.join(dir, 'known_hosts')}\n  GlobalKnownHostsFile /dev/null\n`,
  )
  for (const f of fs.readdirSync(dir)) fs.chownSync(path.join(dir, f), NOBODY_UID, NOBODY_UID)
  fs.chmodSync(key, 0o600)
  return { dir, sshConfig }
}
