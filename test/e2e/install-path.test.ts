// The install path of the README: `npm pack` in a clean copy of this tree, then
// `npm install -g ./subnet-tunnel-*.tgz` (into a temporary prefix, never the machine's own),
// then the installed command: it runs with no build step, as a user with an empty environment,
// its files are root's (so `sudoers` accepts it), and it carries a real tunnel.
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, Tunnel } from './lib/cli'
import { describeRun, REPO_DIR } from './lib/exec'
import { e2eDescribe } from './lib/guard'
import { useTestbed } from './lib/setup'
import type { Testbed } from './lib/testbed'
import { curl } from './lib/traffic'

const pkg = JSON.parse(readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as {
  version: string
  scripts: Record<string, string>
  man?: string[]
}

/** Every path under dir (files and directories), depth first. */
function walk(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    out.push(p)
    if (lstatSync(p).isDirectory()) out.push(...walk(p))
  }
  return out
}

e2eDescribe('install path: npm pack, npm install -g, the installed command', () => {
  let tb: Testbed
  // Under /run (root's, 0755), not /tmp: a world-writable parent would make the install unsafe
  // for a sudoers rule, which is one of the things checked below.
  let work = ''
  let prefix = ''
  let installed = ''

  useTestbed('ip', (t) => (tb = t), {
    setUp: () => {
      work = mkdtempSync('/run/st-install-')
      chmodSync(work, 0o755) // other users run the installed command too
      const src = path.join(work, 'src')
      mkdirSync(src)
      // What a clean clone has: tracked files and new ones not ignored; no dist/, no node_modules/.
      const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_DIR, encoding: 'utf8' })
        .split('\0')
        .filter((f) => f && f !== 'node_modules' && existsSync(path.join(REPO_DIR, f)))
      for (const f of files) cpSync(path.join(REPO_DIR, f), path.join(src, f), { recursive: true })
      expect(existsSync(path.join(src, 'dist'))).toBe(false)
      // The packing side has the dev dependencies (tsc), like a developer after `npm ci`.
      symlinkSync(path.join(REPO_DIR, 'node_modules'), path.join(src, 'node_modules'))
      const pack = spawnSync('npm', ['pack', '--pack-destination', work, '--loglevel=error'], { cwd: src, encoding: 'utf8', timeout: 180_000 })
      expect(pack.status, pack.stderr).toBe(0)
      const tgz = path.join(work, `subnet-tunnel-${pkg.version}.tgz`)
      expect(existsSync(tgz), pack.stdout).toBe(true)
      prefix = path.join(work, 'prefix')
      // --prefer-offline: the dependencies come from npm's cache, filled by `npm ci`.
      const inst = spawnSync('npm', ['install', '-g', '--prefix', prefix, tgz, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
        cwd: work,
        encoding: 'utf8',
        timeout: 180_000,
      })
      expect(inst.status, inst.stderr).toBe(0)
      installed = path.join(prefix, 'bin', 'subnet-tunnel')
    },
    tearDown: () => {
      if (work) rmSync(work, { recursive: true, force: true })
    },
  })

  it('packs compiled code and compiles nothing at install', () => {
    // No lifecycle script that an install would run, and none that needs tsc on the target.
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) expect(pkg.scripts[s], s).toBeUndefined()
    const root = path.join(prefix, 'lib', 'node_modules', 'subnet-tunnel')
    expect(existsSync(path.join(root, 'dist', 'cli', 'main.js'))).toBe(true)
    expect(existsSync(path.join(root, 'src'))).toBe(false)
    expect(existsSync(path.join(root, 'test'))).toBe(false)
    expect(existsSync(path.join(root, 'node_modules', 'typescript'))).toBe(false)
    // The man page, generated at pack time, is linked where man looks under the prefix.
    const man = path.join(prefix, 'share', 'man', 'man1', 'subnet-tunnel.1')
    expect(existsSync(man), man).toBe(true)
    const page = spawnSync('man', ['-l', man], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', MANWIDTH: '100' } })
    expect(page.stdout).toMatch(/SUBNET-TUNNEL\(1\)/)
    expect(page.stdout.replace(/.\x08/g, '')).toContain('--log-file')
  })

  it('runs as a user with an empty environment: version, help', () => {
    const env = { PATH: `${path.dirname(installed)}:/usr/bin:/bin` }
    const v = spawnSync('env', ['-i', `PATH=${env.PATH}`, 'HOME=/nonexistent', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'subnet-tunnel', '--version'], {
      encoding: 'utf8',
    })
    expect(v.status, v.stderr).toBe(0)
    expect(v.stdout).toContain(pkg.version)
    const h = spawnSync('env', ['-i', `PATH=${env.PATH}`, 'subnet-tunnel', '--help'], { encoding: 'utf8' })
    expect(h.status, h.stderr).toBe(0)
    expect(h.stdout).toMatch(/Usage: subnet-tunnel/)
  })

  it('is root-owned and writable by nobody else, so `sudoers` accepts it', () => {
    const root = path.join(prefix, 'lib', 'node_modules', 'subnet-tunnel')
    const bad = walk(root).filter((p) => {
      const st = lstatSync(p)
      return st.uid !== 0 || (!st.isSymbolicLink() && (st.mode & 0o022) !== 0)
    })
    expect(bad).toEqual([])
    const r = spawnSync(installed, ['sudoers', '--user', 'nobody'], { encoding: 'utf8' })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain(`${root}/dist/platform/helper/helper-main.js`)
  })

  it('the installed command carries a tunnel', async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet], { bin: installed })
    try {
      const r = await curl(tb, tb.url(tb.env.privateIp))
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stdout).toContain('hello from the private network')
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
  })
})
