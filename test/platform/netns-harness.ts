/**
 * Shared plumbing for the root-only platform tests: compile src/ into a temp dir (so these tests
 * do not depend on dist/ being fresh or on other layers compiling), and a throwaway network
 * namespace. Rules are only ever applied inside that namespace.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const ROOT = path.resolve(__dirname, '../..')

/** Root, Linux, and `ip netns` usable. */
export function canUseNetns(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false
  return spawnSync('ip', ['netns', 'list']).status === 0
}

/** Compiles src/platform (and what it imports) into dir; returns dir/platform. */
export function compilePlatform(dir: string): string {
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '--outDir', dir, '--rootDir', path.join(ROOT, 'src'),
    '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node', '--strict',
    '--esModuleInterop', '--skipLibCheck', '--types', 'node',
    path.join(ROOT, 'src/platform/helper/helper-main.ts'), path.join(ROOT, 'src/platform/os/original-dst.ts')], { stdio: 'pipe' })
  return path.join(dir, 'platform')
}

/** Environment for node processes run from the temp build: modules resolve from our node_modules. */
export function nodeEnv(stateDir: string): NodeJS.ProcessEnv {
  return { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules'), SUBNET_TUNNEL_STATE_DIR: stateDir }
}

export class Netns {
  readonly name = `st-plat-${randomBytes(3).toString('hex')}`

  constructor() {
    execFileSync('ip', ['netns', 'add', this.name])
    this.sh('ip', 'link', 'set', 'lo', 'up')
  }

  /** Runs argv inside the namespace; returns stdout (throws on failure unless allowFail). */
  sh(...argv: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.name, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  }

  /** Everything rule-related in the namespace, as text (nft view covers iptables-nft too). */
  rules(): string {
    const out = [this.sh('nft', 'list', 'ruleset')]
    for (const bin of ['iptables-save', 'ip6tables-save']) {
      const r = spawnSync('ip', ['netns', 'exec', this.name, bin, '-t', 'nat'], { encoding: 'utf8' })
      out.push(r.stdout ?? '')
    }
    return out.join('\n')
  }

  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.name])
  }
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls until fn() is true or the time is up; returns the last value. */
export async function waitFor(fn: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    if (fn()) return true
    if (Date.now() > end) return false
    await sleep(50)
  }
}
