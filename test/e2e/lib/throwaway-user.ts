/**
 * A throwaway local user for attack tests ("another user on this machine"): made with useradd,
 * removed with userdel in remove() — and, if the test file dies first, by a process 'exit' hook.
 * No home directory, no login shell, no password.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

export interface ThrowawayUser {
  readonly name: string
  readonly uid: number
  readonly gid: number
  /** Runs argv as this user (setpriv: its uid and gid, no supplementary groups); throws on failure. */
  run(argv: readonly string[]): string
  /** userdel; safe to call twice. */
  remove(): void
}

const live = new Set<string>()
let hooked = false

function userdel(name: string): void {
  try {
    execFileSync('userdel', [name], { stdio: 'ignore' })
  } catch {
    // gone already
  }
  live.delete(name)
}

export function addThrowawayUser(prefix = 'st'): ThrowawayUser {
  if (!hooked) {
    hooked = true
    process.on('exit', () => [...live].forEach(userdel))
  }
  const name = `${prefix}${randomBytes(4).toString('hex')}`
  execFileSync('useradd', ['--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', name], { stdio: 'pipe' })
  live.add(name)
  const id = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim())
  const uid = id('-u')
  const gid = id('-g')
  return {
    name,
    uid,
    gid,
    run: (argv) =>
      execFileSync('setpriv', ['--reuid', String(uid), '--regid', String(gid), '--clear-groups', '--', ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    remove: () => userdel(name),
  }
}
