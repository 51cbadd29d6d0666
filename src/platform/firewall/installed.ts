/**
 * Which redirection methods have their tools installed here (for `--version`): a look at the
 * file system only, no root and no probe. Whether one really works (kernel modules, privileges)
 * is decided at start, by the helper's probe.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { MethodName } from './types'

/** What each method needs: programs (found on PATH or in the sbin directories) and device nodes. */
const NEEDS: Readonly<Record<MethodName, readonly string[]>> = {
  nft: ['nft'],
  nat: ['iptables'],
  tun: ['ip', '/dev/net/tun'],
  pf: ['pfctl'],
}

/** The order --version lists them in: the order `--method auto` tries them. */
const ORDER: Readonly<Record<string, readonly MethodName[]>> = { darwin: ['pf', 'tun'], linux: ['nft', 'nat', 'tun'] }

/** Methods of this platform whose tools exist. `exists` and `envPath` are injectable (tests). */
export function installedMethods(
  platform: NodeJS.Platform = process.platform,
  envPath: string = process.env.PATH ?? '',
  exists: (p: string) => boolean = fs.existsSync,
): MethodName[] {
  // The sbin directories are often missing from a user's PATH, where nft and iptables live.
  const dirs = [...envPath.split(':').filter(Boolean), '/usr/sbin', '/sbin', '/usr/bin', '/bin']
  const found = (need: string): boolean => (need.startsWith('/') ? exists(need) : dirs.some((d) => exists(path.join(d, need))))
  return (ORDER[platform] ?? []).filter((m) => NEEDS[m].every(found))
}
