import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'

/**
 * bin/subnet-tunnel.js picks dist/cli/main.bundle.js (scripts/bundle.js) over dist/cli/main.js
 * only when the bundle is at least as new: a `tsc` after the last bundle must never leave the
 * old code running. Run on a copy of the launcher with two stand-in entry points.
 */
const LAUNCHER = path.resolve(__dirname, '..', '..', 'bin', 'subnet-tunnel.js')

describe('bin/subnet-tunnel.js: which entry point it loads', () => {
  let root: string
  const cli = path.join.bind(path)
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'st-launcher-'))
    mkdirSync(cli(root, 'bin'))
    mkdirSync(cli(root, 'dist', 'cli'), { recursive: true })
    copyFileSync(LAUNCHER, cli(root, 'bin', 'subnet-tunnel.js'))
    const entry = (name: string): string => `exports.cliEntry = () => process.stdout.write(${JSON.stringify(name)})\n`
    writeFileSync(cli(root, 'dist', 'cli', 'main.js'), entry('plain'))
    writeFileSync(cli(root, 'dist', 'cli', 'main.bundle.js'), entry('bundle'))
  })
  afterEach(() => rmSync(root, { recursive: true, force: true }))

  const run = (): string => {
    const r = spawnSync(process.execPath, [cli(root, 'bin', 'subnet-tunnel.js')], { encoding: 'utf8', timeout: 10_000 })
    expect(r.status, r.stderr).toBe(0)
    return r.stdout
  }
  const at = (file: string, s: number): void => utimesSync(cli(root, 'dist', 'cli', file), s, s)

  it('the bundle when it is newer than main.js', () => {
    at('main.js', 1_000_000)
    at('main.bundle.js', 1_000_010)
    expect(run()).toBe('bundle')
  })

  it('the bundle when both have the same time (a packed install)', () => {
    at('main.js', 1_000_000)
    at('main.bundle.js', 1_000_000)
    expect(run()).toBe('bundle')
  })

  it('main.js when tsc rebuilt after the bundle was made (a stale bundle)', () => {
    at('main.bundle.js', 1_000_000)
    at('main.js', 1_000_010)
    expect(run()).toBe('plain')
  })

  it('main.js when there is no bundle', () => {
    rmSync(cli(root, 'dist', 'cli', 'main.bundle.js'))
    expect(run()).toBe('plain')
  })
})
