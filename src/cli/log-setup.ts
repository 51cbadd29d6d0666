import os from 'node:os'
import path from 'node:path'

/**
 * Where the log goes: --log-file, else with -f `$XDG_STATE_HOME/subnet-tunnel/NAME.log`
 * (~/.local/state by default; NAME: the profile, else the remote), since a tunnel in the
 * background has no terminal to write to. Without either, undefined (stderr only).
 */
export function logFileFor(args: { logFile?: string; background: boolean; profile?: string; remote?: string }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (args.logFile !== undefined) return path.resolve(args.logFile)
  if (!args.background) return undefined
  const base = env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state')
  // A remote like user@host:2222 becomes user@host_2222: one file per tunnel, no path tricks.
  const name = (args.profile ?? args.remote ?? 'subnet-tunnel').replace(/[^A-Za-z0-9@._-]/g, '_').replace(/^\.+/, '_')
  return path.join(base, 'subnet-tunnel', `${name}.log`)
}
