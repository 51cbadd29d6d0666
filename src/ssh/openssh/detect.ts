/**
 * Is there an OpenSSH client we can use as a ControlMaster? `ssh -V` says which version (mux
 * proxy mode needs 7.4), and whether `setpriv` exists to tie the master's life to ours.
 * Checked once, at plan time, before anything starts.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { MIN_VERSION, type OpensshVersion, atLeast, parseSshVersion } from './master-argv'

export type OpensshDetection =
  | { ok: true; ssh: string; version: OpensshVersion; versionText: string; setpriv?: string }
  | { ok: false; why: string }

/** Finds `name` on PATH (an absolute path), like `command -v`. */
export function onPath(name: string, envPath: string = process.env.PATH ?? ''): string | undefined {
  for (const dir of envPath.split(':')) {
    if (!dir) continue
    const p = path.join(dir, name)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      if (fs.statSync(p).isFile()) return p
    } catch {
      /* not here */
    }
  }
  return undefined
}

/** Runs `ssh -V` (5 s bound) and judges the answer. */
export async function detectOpenssh(opts: { ssh?: string; platform?: NodeJS.Platform; env?: NodeJS.ProcessEnv } = {}): Promise<OpensshDetection> {
  const platform = opts.platform ?? process.platform
  if (platform === 'win32') return { ok: false, why: 'the OpenSSH engine needs Unix sockets (not on Windows)' }
  const envPath = (opts.env ?? process.env).PATH ?? ''
  const ssh = opts.ssh ?? onPath('ssh', envPath)
  if (!ssh) return { ok: false, why: 'no ssh client on PATH' }
  const text = await new Promise<string | undefined>((resolve) => {
    execFile(ssh, ['-V'], { timeout: 5000, env: opts.env }, (err, stdout, stderr) => resolve(err ? undefined : `${stderr}${stdout}`.trim()))
  })
  if (text === undefined) return { ok: false, why: `${ssh} -V failed` }
  const version = parseSshVersion(text)
  if (!version) return { ok: false, why: `${ssh} is not OpenSSH (${text.split('\n')[0]})` }
  if (!atLeast(version, MIN_VERSION.major, MIN_VERSION.minor)) {
    return { ok: false, why: `OpenSSH ${version.major}.${version.minor} is older than 7.4 (no mux proxy mode)` }
  }
  const setpriv = platform === 'linux' ? onPath('setpriv', `${envPath}:/usr/bin:/bin`) : undefined
  return { ok: true, ssh, version, versionText: text.split(/[,\n]/)[0]!.trim(), ...(setpriv && { setpriv }) }
}
