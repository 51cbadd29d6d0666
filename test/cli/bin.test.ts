import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { V8_FLAGS } from '../../src/cli/v8-tuning'

// The launcher as npm links it (package.json "bin"), run as a real process against dist/.
const root = path.resolve(__dirname, '..', '..')
const bin = path.join(root, JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).bin['subnet-tunnel'])
const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version

describe('bin/subnet-tunnel.js (needs `npm run build`)', () => {
  it('package.json names only files the package has: its bin, and a main only if the build makes it', () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; main?: string }
    expect(existsSync(bin)).toBe(true)
    // A CLI without a library API: no "main" (it used to name a dist/index.js nothing builds).
    if (pkg.main !== undefined) expect(existsSync(path.join(root, pkg.main)), pkg.main).toBe(true)
  })

  it('prints the version and help through the launcher', () => {
    const v = execFileSync(process.execPath, [bin, '--version'], { encoding: 'utf8' }).split('\n')
    expect(v[0]).toBe(`subnet-tunnel ${version}`)
    expect(v[1]).toBe(`node ${process.version} (${process.platform} ${process.arch})`)
    expect(v[2]).toMatch(/^engines: .*builtin \(ssh2 \d+\.\d+\.\d+\)/)
    expect(v[3]).toMatch(/^methods: /)
    expect(execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })).toMatch(/Usage: subnet-tunnel/)
  })

  it('refuses a Node older than 20 with one line, before loading anything', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'st-bin-'))
    const old = path.join(dir, 'old-node.js')
    // What Debian 12's and Ubuntu 24.04's own nodejs report.
    writeFileSync(old, "Object.defineProperty(process.versions, 'node', { value: '18.19.0' })\n")
    const r = spawnSync(process.execPath, ['--require', old, bin, '-r', 'bastion', '10.0.0.0/8'], { encoding: 'utf8' })
    rmSync(dir, { recursive: true, force: true })
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe(`subnet-tunnel: error: Node.js 18.19.0 is too old; it needs Node.js 20 or newer (${process.execPath})\n`)
  })

  it('sets the V8 flags of v8-tuning.ts before anything else runs', () => {
    // A preload that records every v8.setFlagsFromString the process makes.
    const dir = mkdtempSync(path.join(tmpdir(), 'st-bin-'))
    const spy = path.join(dir, 'spy.js')
    writeFileSync(
      spy,
      "const v8 = require('node:v8'); const set = v8.setFlagsFromString; const seen = []\n" +
        'v8.setFlagsFromString = (f) => { seen.push(f); return set(f) }\n' +
        "process.on('exit', () => process.stderr.write('FLAGS ' + JSON.stringify(seen) + '\\n'))\n",
    )
    const r = spawnSync(process.execPath, ['--require', spy, bin, '--version'], { encoding: 'utf8' })
    rmSync(dir, { recursive: true, force: true })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toContain(`FLAGS ${JSON.stringify(V8_FLAGS)}`)
  })

  it('never lets a -r name reach the ProxyCommand shell, with no ssh binary (parser fallback)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'st-bin-'))
    try {
      const config = path.join(dir, 'config')
      writeFileSync(config, 'Host *\n  ProxyCommand printf %h\n')
      const marker = path.join(dir, 'pwned')
      // PATH without ssh: the built-in parser resolves the config and the builtin engine would run
      // the ProxyCommand through /bin/sh with %h expanded.
      const r = spawnSync(process.execPath, [bin, '-F', config, '-r', `host$(/usr/bin/touch ${marker})`, '-D', '127.0.0.1:19999'], {
        encoding: 'utf8',
        env: { PATH: dir, HOME: dir, SUBNET_TUNNEL_NO_TTY: '1' },
        timeout: 15_000,
      })
      expect(existsSync(marker), r.stderr).toBe(false)
      expect(r.status, r.stderr).toBe(2)
      expect(r.stderr).toMatch(/host name "host\$\(\/usr\/bin\/touch .*\)" contains characters ssh does not allow \[USAGE\]/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('exits 2 with one error line and a hint for a usage error, touching nothing', () => {
    const r = spawnSync(process.execPath, [bin, '-r', 'example', '10.0.0.0/33'], { encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe(
      'subnet-tunnel: error: invalid subnet "10.0.0.0/33" [BAD_CIDR]\n  hint: use a CIDR like 10.0.0.0/16 or fd00::/64, a single IP, or a host name\n',
    )
  })
})
