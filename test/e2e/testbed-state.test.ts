// The testbed's state — sshd_config, keys, the ssh_config and env file that `sudo subnet-tunnel
// demo` and the tests use as root — must be root's alone, and nothing read back from it may run
// as shell code. Another local user (a throwaway account made with useradd) prepares the traps:
// a base directory made first (the old fixed /tmp/subnet-tunnel-testbed), a symlink, a parent
// they own; and hostile lines in what `testbed env` prints.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { describeRun, REPO_DIR, run, TESTBED_SCRIPT, type RunResult } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'
import { addThrowawayUser, type ThrowawayUser } from './lib/throwaway-user'

e2eDescribe('testbed state: a root-only base, and env output that never runs as code', () => {
  let user: ThrowawayUser
  let work: string
  const userPaths: string[] = []
  const built: Array<{ name: string; base?: string }> = []

  beforeAll(() => {
    assertRoot()
    user = addThrowawayUser('sttb')
    work = mkdtempSync('/tmp/st-e2e-tbstate-')
  })
  afterAll(async () => {
    try {
      for (const { name, base } of built) {
        await run([TESTBED_SCRIPT, 'down', name], { env: { ...process.env, ...(base && { TESTBED_DIR: base }) }, timeoutMs: 30_000 })
      }
    } finally {
      for (const p of userPaths) rmSync(p, { recursive: true, force: true })
      if (work) rmSync(work, { recursive: true, force: true })
      user?.remove()
    }
  })

  /** `scripts/testbed up NAME` with TESTBED_DIR=base; always torn down in afterAll. */
  const upAt = (base: string): Promise<RunResult> => {
    const name = newTestbedName('hyx')
    built.push({ name, base })
    return run([TESTBED_SCRIPT, 'up', name], { env: { ...process.env, TESTBED_DIR: base, TESTBED_QUIET: '1' }, timeoutMs: 60_000 })
  }
  /** A fresh path in /tmp that the other user creates (or links) first. */
  const userPath = (): string => {
    const p = `/tmp/st-e2e-other-${Math.random().toString(36).slice(2, 10)}`
    userPaths.push(p)
    return p
  }
  const namespaces = async (): Promise<string> => (await run(['ip', 'netns', 'list'])).stdout

  it.each([
    ['a base another user made first (the old /tmp/subnet-tunnel-testbed attack)', /owned by uid \d+, not root/, () => {
      const base = userPath()
      user.run(['mkdir', '-m', '755', base])
      return { base, watch: base }
    }],
    ["another user's symlink to a root-only directory", /not a real path/, () => {
      const target = path.join(work, `target-${built.length}`)
      mkdirSync(target, { mode: 0o700 })
      const base = userPath()
      user.run(['ln', '-s', target, base])
      return { base, watch: target }
    }],
    ['a base inside a directory another user owns (they could swap it after the check)', /parent .* owned by uid \d+/, () => {
      const parent = userPath()
      user.run(['mkdir', '-m', '755', parent])
      return { base: path.join(parent, 'base'), watch: parent }
    }],
    ['a root-owned base that others can write', /writable by group or others \(mode 0777\)/, () => {
      const base = path.join(work, `open-${built.length}`)
      mkdirSync(base)
      chmodSync(base, 0o777)
      return { base, watch: base }
    }],
  ])('up refuses %s and writes nothing there', async (_what, why, setup) => {
    const { base, watch } = setup()
    const r = await upAt(base)
    const name = built[built.length - 1]!.name
    expect(r.code, describeRun(r)).not.toBe(0)
    expect(r.stderr).toMatch(why)
    expect(readdirSync(watch).filter((f) => f !== 'base')).toEqual([])
    expect(existsSync(path.join(watch, 'base'))).toBe(false)
    expect(await namespaces()).not.toContain(`st-${name}-`)
  })

  it('by default keeps state in /run/subnet-tunnel-testbed (root, 0700); distinct names come and go concurrently', async () => {
    const [a, b] = await Promise.all([Testbed.up(newTestbedName('hya')), Testbed.up(newTestbedName('hyb'))])
    built.push({ name: a.name }, { name: b.name })
    for (const tb of [a, b]) expect(path.dirname(tb.env.dir)).toBe('/run/subnet-tunnel-testbed')
    const st = statSync('/run/subnet-tunnel-testbed')
    expect([st.uid, st.mode & 0o077]).toEqual([0, 0])
    // One goes down (and may remove the shared base) while another comes up.
    const [, c] = await Promise.all([a.down(), Testbed.up(newTestbedName('hyc'))])
    built.push({ name: c.name })
    expect(existsSync(c.env.sshConfig)).toBe(true)
    const sshd = await c.exec('bastion', ['ss', '-Hltn', 'sport = :22'])
    expect(sshd.stdout).toContain('LISTEN')
    await Promise.all([b.down(), c.down()])
  })

  it('env prints only ST_*=literal lines: hostile lines in the env file are refused, hostile values stay text', async () => {
    const base = path.join(work, 'base')
    mkdirSync(base, { mode: 0o700 })
    const env = (name: string, text: string): string => {
      mkdirSync(path.join(base, name), { mode: 0o700 })
      writeFileSync(path.join(base, name, 'env'), text)
      return name
    }
    const mark = (n: number): string => path.join(work, `pwned-${n}`)
    // What a script (or a person) does with the output: eval it.
    const evalEnv = (name: string): Promise<RunResult> =>
      run(['bash', '-c', 'eval "$("$0" env "$1")"; printf %s "${ST_V-unset}"', TESTBED_SCRIPT, name], { env: { ...process.env, TESTBED_DIR: base } })

    const quoted = await evalEnv(env('q1', `ST_NAME='q1'\nST_V='a'\\''$(touch ${mark(1)})'\\'''\n`))
    expect(quoted.stdout, describeRun(quoted)).toBe(`a'$(touch ${mark(1)})'`)
    for (const [i, line] of [`touch ${mark(2)}`, `ST_V=$(touch ${mark(3)})`, `ST_V='x';touch ${mark(4)}`, `ST_V[$(touch ${mark(5)})]='x'`].entries()) {
      const r = await evalEnv(env(`h${i}`, `ST_NAME='h${i}'\n${line}\n`))
      expect(r.stderr, describeRun(r)).toMatch(/not a testbed env file \(bad line/)
      expect(r.stdout).toBe('unset')
    }
    for (let n = 1; n <= 5; n++) expect(existsSync(mark(n)), `pwned-${n}`).toBe(false)
  })

  it('the demo never evaluates what `testbed env` prints', async () => {
    // A copy of the demo next to a stand-in testbed whose env output is hostile.
    const dir = path.join(work, 'demo')
    mkdirSync(path.join(dir, 'scripts'), { recursive: true })
    for (const f of ['demo', 'testbed-env.bash']) {
      const src = path.join(REPO_DIR, 'scripts', f)
      if (existsSync(src)) copyFileSync(src, path.join(dir, 'scripts', f))
    }
    const fake = path.join(dir, 'scripts', 'testbed')
    const mark = (n: number): string => path.join(work, `demo-pwned-${n}`)
    const output = (lines: string[]): void =>
      writeFileSync(fake, `#!/bin/sh\ncase "$1" in env) cat <<'EOF'\n${lines.join('\n')}\nEOF\n;; esac\nexit 0\n`, { mode: 0o755 })
    const demo = (): Promise<RunResult> =>
      run(['bash', path.join(dir, 'scripts', 'demo')], { env: { ...process.env, SUBNET_TUNNEL_CLI: '/bin/false' }, timeoutMs: 60_000 })

    output(["ST_CLIENT_NS='none'", `touch ${mark(1)}`])
    const bad = await demo()
    expect(bad.code, describeRun(bad)).not.toBe(0)
    expect(bad.stderr).toMatch(/unexpected output from scripts\/testbed env/)
    expect(existsSync(mark(1))).toBe(false)

    // Well-formed lines with hostile values: used as plain strings (the demo then fails normally).
    const benign = ['CLIENT_IP', 'BASTION_IP', 'PRIVATE_IP6', 'PRIVATE_NET', 'PRIVATE_NET6', 'BIG_FILE', 'BIG_FILE_SHA256'].map((k) => `ST_${k}='x'`)
    output([...benign, `ST_CLIENT_NS='$(touch ${mark(2)})'`, `ST_PRIVATE_IP='\`touch ${mark(3)}\`'`, `ST_SSH_CONFIG='x;touch ${mark(4)}'`])
    const values = await demo()
    expect(values.code, describeRun(values)).not.toBe(0)
    for (const n of [2, 3, 4]) expect(existsSync(mark(n)), `demo-pwned-${n}`).toBe(false)
    // It got as far as using them: the stand-in's values reached the tunnel step.
    expect(values.stdout).toContain(`subnet-tunnel -F x;touch ${mark(4)} -r bastion`)
  })
})
