// The sudoers rules for real: a throwaway user, a root-owned copy of this package, the drop-in
// `subnet-tunnel sudoers` prints, real sudo and the real helper inside a throwaway namespace.
// The ordinary rule must not give method tun; the tun rule gives it within limits; the NEED_ROOT
// hint and `sudoers` print a rule only for an install the user cannot change.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { memoryLogger } from '../../src/observe/logger'
import { startHelper, type HelperClient } from '../../src/platform/helper/helper-client'
import type { CaptureSpec } from '../../src/platform/firewall/types'
import { assertCliBuilt } from './lib/cli'
import { describeRun, REPO_DIR, run } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'

const tag = randomBytes(3).toString('hex')
const USER = `st-e2e-${tag}`
const NS = `st-e2e-grant-${tag}`
/** On disk, root-owned 0755 all the way up (os.tmpdir() is world-writable: never a safe install). */
const TOP = `/var/lib/st-e2e-grant-${tag}`
const PKG = path.join(TOP, 'pkg')
const HOME = path.join(TOP, 'home')
const DROP_IN = `/etc/sudoers.d/st-e2e-grant-${tag}`
const HELPER = path.join(PKG, 'dist/platform/helper/helper-main.js')
const CLI = path.join(PKG, 'dist/cli/main.js')

/** Removes everything this file adds to the machine; safe to call twice, also at process exit. */
function removeAll(): void {
  fs.rmSync(DROP_IN, { force: true })
  spawnSync('userdel', [USER])
  spawnSync('ip', ['netns', 'del', NS])
  fs.rmSync(TOP, { recursive: true, force: true })
}

/** Installs a sudoers drop-in only after visudo accepted it (a broken file breaks sudo for all). */
function installDropIn(text: string): void {
  const tmp = path.join(TOP, 'drop-in')
  fs.writeFileSync(tmp, text, { mode: 0o440 })
  execFileSync('visudo', ['-cqf', tmp])
  fs.renameSync(tmp, DROP_IN)
}

/** argv that runs a command as USER inside the namespace. */
const asUser = (...argv: string[]): string[] => ['ip', 'netns', 'exec', NS, 'setpriv', '--reuid', USER, '--regid', USER, '--init-groups', ...argv]

e2eDescribe('helper through real sudo: the ordinary rule, the tun rule, the install check', () => {
  let uid: number
  const clients: HelperClient[] = []

  beforeAll(() => {
    assertRoot()
    assertCliBuilt()
    process.on('exit', removeAll)
    execFileSync('useradd', ['--no-create-home', '--user-group', '--home-dir', HOME, '--shell', '/usr/sbin/nologin', USER])
    uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim())
    // The package as `sudo npm install -g` would leave it: a root-owned copy nobody else can write.
    fs.mkdirSync(PKG, { recursive: true, mode: 0o755 })
    fs.mkdirSync(HOME, { mode: 0o700 })
    fs.chownSync(HOME, uid, uid)
    fs.copyFileSync(path.join(REPO_DIR, 'package.json'), path.join(PKG, 'package.json'))
    execFileSync('cp', ['-a', path.join(REPO_DIR, 'dist'), path.join(PKG, 'dist')])
    execFileSync('cp', ['-a', `${fs.realpathSync(path.join(REPO_DIR, 'node_modules'))}/.`, path.join(PKG, 'node_modules')])
    execFileSync('chown', ['-R', 'root:root', TOP])
    fs.chownSync(HOME, uid, uid)
    execFileSync('chmod', ['-R', 'go-w,a+rX', PKG])
    execFileSync('ip', ['netns', 'add', NS])
    execFileSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up'])
  }, 180_000)

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {})
    removeAll()
    process.off('exit', removeAll)
  })

  async function helper(tunFlag: boolean): Promise<HelperClient> {
    const argv = asUser('sudo', '-n', '--', process.execPath, HELPER, ...(tunFlag ? ['--allow-tun'] : []))
    const c = await startHelper({
      log: memoryLogger(),
      launch: { command: argv[0], args: argv.slice(1), viaSudo: true, interactive: false },
      installSafety: () => ({ safe: true }),
    })
    clients.push(c)
    return c
  }

  const tun = (include: string[], owner = uid): CaptureSpec => ({ instanceId: `g${tag}`, listenPort: 0, include: include.map(parseCidr), exclude: [], tunOwner: owner })
  const links = (): string => execFileSync('ip', ['netns', 'exec', NS, 'ip', '-o', 'link', 'show'], { encoding: 'utf8' })

  it('`subnet-tunnel sudoers` on a root-owned install: a drop-in visudo accepts, with the tun rule commented out', async () => {
    const r = await run([process.execPath, CLI, 'sudoers', '--user', USER])
    expect(r.code, describeRun(r)).toBe(0)
    const active = r.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'))
    expect(active).toEqual([`${USER} ALL=(root) NOPASSWD: ${process.execPath} ${HELPER}`])
    expect(r.stdout).toContain(`# ${USER} ALL=(root) NOPASSWD: ${process.execPath} ${HELPER} --allow-tun`)
    installDropIn(r.stdout)
  })

  it('the ordinary rule: sudo refuses the --allow-tun argv, and the helper it allows refuses tun', async () => {
    const refused = await run(asUser('sudo', '-n', '--', process.execPath, HELPER, '--allow-tun'))
    expect(refused.code, describeRun(refused)).toBe(1)
    expect(refused.stderr).toMatch(/a password is required/)
    const h = await helper(false)
    await expect(h.apply('tun', tun(['0.0.0.0/0']))).rejects.toMatchObject({ code: 'HELPER', message: expect.stringMatching(/not granted/) })
    await expect(h.apply('tun', tun(['10.99.0.0/24']))).rejects.toMatchObject({ message: expect.stringMatching(/not granted/) })
    expect(links()).not.toMatch(/\bst[a-z0-9]+:/)
    await h.close()
  }, 60_000)

  it('with the tun rule: a /24 for the user\'s own device (strict rp_filter); no 0/0, no device for someone else', async () => {
    const r = await run([process.execPath, CLI, 'sudoers', '--user', USER])
    installDropIn(r.stdout.replace(`# ${USER} ALL=`, `${USER} ALL=`))
    const h = await helper(true)
    await expect(h.apply('tun', tun(['0.0.0.0/0']))).rejects.toMatchObject({ message: expect.stringMatching(/0\.0\.0\.0\/0 is wider than \/8/) })
    await expect(h.apply('tun', tun(['10.99.0.0/24'], 65534))).rejects.toMatchObject({ message: expect.stringMatching(/may only be owned by uid/) })
    expect(await h.apply('tun', tun(['10.99.0.0/24']))).toMatchObject({ method: 'tun', object: `stg${tag}` })
    expect(execFileSync('ip', ['netns', 'exec', NS, 'ip', '-d', 'link', 'show', `stg${tag}`], { encoding: 'utf8' })).toMatch(new RegExp(`tun .*user ${USER}|tun .*user ${uid}`))
    expect(execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-n', `net.ipv4.conf.stg${tag}.rp_filter`], { encoding: 'utf8' }).trim()).toBe('1')
    expect(await h.revert()).toEqual({ reverted: true })
    expect(links()).not.toMatch(/\bst[a-z0-9]+:/)
    await h.close()
  }, 60_000)

  it('NEED_ROOT: the rule only for a safe install (tun: the tun rule); an install the user can change gets the reason instead', async () => {
    fs.rmSync(DROP_IN, { force: true })
    // An "SSH server" on loopback that accepts and never says a word: the SSH side neither
    // succeeds nor fails fast (a refused port would — the CLI reports a refused bastion at once,
    // racing sudo's refusal), so the helper's failure is what gets reported.
    const server = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e',
      "const s = require('net').createServer(() => {}).listen(0, '127.0.0.1', () => console.log(s.address().port))"],
    { stdio: ['ignore', 'pipe', 'inherit'] })
    onTestFinished(() => {
      server.kill('SIGKILL')
    })
    const port = Number(await new Promise<string>((r) => server.stdout!.once('data', (d: Buffer) => r(d.toString()))))
    expect(port).toBeGreaterThan(0)
    const cli = (...args: string[]) => run(asUser('env', `HOME=${HOME}`, process.execPath, CLI, '-r', `root@127.0.0.1:${port}`, ...args, '10.99.0.0/24'), { timeoutMs: 60_000 })
    const safe = await cli()
    expect(safe.stderr, describeRun(safe)).toMatch(/\[NEED_ROOT\]/)
    expect(safe.stderr).toContain(`add a NOPASSWD rule (\`subnet-tunnel sudoers\` prints it with what it grants): ${USER} ALL=(root) NOPASSWD: ${process.execPath} ${HELPER}\n`)
    const tunHint = await cli('--method', 'tun')
    expect(tunHint.stderr, describeRun(tunHint)).toMatch(/the ordinary rule does not grant --method tun/)
    expect(tunHint.stderr).toContain(`${HELPER} --allow-tun`)

    // One file of dist/ handed to the user: they could now put any code into root's helper.
    const planted = path.join(PKG, 'dist/platform/firewall/naming.js')
    fs.chownSync(planted, uid, uid)
    const unsafe = await cli()
    expect(unsafe.stderr, describeRun(unsafe)).toMatch(/\[NEED_ROOT\]/)
    expect(unsafe.stderr).toContain(`A NOPASSWD rule would be unsafe here: ${planted} is owned by uid ${uid}, not root`)
    expect(unsafe.stderr).not.toMatch(/NOPASSWD: \//)
    const refused = await run([process.execPath, CLI, 'sudoers', '--user', USER])
    expect(refused.code).toBe(1)
    expect(refused.stdout).toBe('')
    expect(refused.stderr).toMatch(new RegExp(`no sudoers rule for this install: ${planted.replace(/[.]/g, '\\.')} is owned by uid ${uid}, not root, .*\\[UNSAFE_INSTALL\\]`))
    fs.chownSync(planted, 0, 0)
  }, 120_000)
})
