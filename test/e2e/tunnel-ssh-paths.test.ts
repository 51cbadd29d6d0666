// How users really reach bastions, against the real sshd: through a jump host (-J), through a
// ProxyCommand, and as an unprivileged user whose helper is started through real sudo.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { assertCliBuilt, killAllTunnels, remoteArgs, Tunnel } from './lib/cli'
import { REPO_DIR, describeRun } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'
import { NOBODY, NOBODY_UID, makeUnprivilegedHome } from './lib/unprivileged'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('SSH paths and privileges (real CLI, real sshd)', () => {
  let tb: Testbed
  let userDir: string | undefined
  let sudoers: string | undefined
  const removeSudoers = (): void => {
    if (sudoers) fs.rmSync(sudoers, { force: true })
  }

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('tp'))
  })
  afterAll(async () => {
    await killAllTunnels()
    removeSudoers()
    process.off('exit', removeSudoers)
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true })
    await tb?.down()
  })

  async function expectWorks(args: string[], opts: Parameters<typeof Tunnel.start>[2] = {}): Promise<Tunnel> {
    const t = await Tunnel.start(tb, args, opts)
    const r = await curl(tb, tb.url(tb.env.privateIp))
    expect(r.stdout, describeRun(r) + t.stderr).toContain(HELLO)
    return t
  }

  it('-J: through a jump host, each hop verified against known_hosts', async () => {
    // The bastion is its own jump host: the outer connection forwards a channel to its sshd,
    // and a second SSH session runs inside it — exactly the path of `ssh -J`.
    const t = await expectWorks([...remoteArgs(tb), '-J', 'bastion', tb.env.privateNet])
    expect(t.upLine).toMatch(/via 10\.250\.0\.1:22/)
    expect((await t.stop()).code).toBe(0)
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('ProxyCommand: its stdio carries SSH (like aws ssm / gcloud iap bastions)', async () => {
    const t = await expectWorks([...remoteArgs(tb), '-o', 'ProxyCommand=socat - TCP:%h:%p', '-v', tb.env.privateNet])
    expect((await t.stop()).code).toBe(0)
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('StrictHostKeyChecking=accept-new records an unknown host key, and the next start verifies it', async () => {
    const kh = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'st-e2e-kh-')), 'known_hosts')
    try {
      fs.writeFileSync(kh, '')
      const opts = ['-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=accept-new']
      const t1 = await expectWorks([...remoteArgs(tb, 'bastion-nokey'), ...opts, tb.env.privateNet])
      expect((await t1.stop()).code).toBe(0)
      const recorded = fs.readFileSync(kh, 'utf8')
      expect(recorded).toMatch(new RegExp(`^${tb.env.bastionIp.replace(/\./g, '\\.')} ssh-ed25519 AAAA`, 'm'))
      // Now known: strict checking accepts it without asking.
      const t2 = await expectWorks([...remoteArgs(tb, 'bastion-nokey'), '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', tb.env.privateNet])
      expect((await t2.stop()).code).toBe(0)
      expect(fs.readFileSync(kh, 'utf8')).toBe(recorded)
    } finally {
      fs.rmSync(path.dirname(kh), { recursive: true, force: true })
    }
  })

  it('as an unprivileged user: only the helper runs as root, started through sudo', async () => {
    // A home for uid 65534 with its own key, ssh config and known_hosts, and a sudoers rule that
    // allows exactly the helper — what an admin would set up for NOPASSWD use.
    const home = makeUnprivilegedHome(tb)
    userDir = home.dir
    const helper = fs.realpathSync(path.join(REPO_DIR, 'dist', 'platform', 'helper', 'helper-main.js'))
    // The clone must be readable by an unprivileged user for this test to mean anything.
    execFileSync(NOBODY[0], [...NOBODY.slice(1), 'test', '-r', helper])
    sudoers = `/etc/sudoers.d/subnet-tunnel-e2e-${process.pid}`
    process.on('exit', removeSudoers)
    fs.writeFileSync(sudoers, `nobody ALL=(root) NOPASSWD: ${process.execPath} ${helper}\n`, { mode: 0o440 })
    execFileSync('visudo', ['-cf', sudoers])

    const t = await expectWorks(['-F', path.join(userDir, 'ssh_config'), '-r', 'bastion', '-v', tb.env.privateNet], {
      wrap: NOBODY,
      env: { HOME: userDir },
    })
    try {
      // The main process (SSH, keys, listener) runs as nobody; only the helper is root.
      const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1])
      expect(uidOf(t.pid)).toBe(NOBODY_UID)
      const rootKids = t.descendants().filter((p) => {
        try {
          return uidOf(p) === 0 && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('helper-main.js')
        } catch {
          return false
        }
      })
      expect(rootKids.length, 'a root helper under the unprivileged CLI').toBeGreaterThan(0)
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
  })

  it('as an unprivileged user without a sudo rule: NEED_ROOT, nothing applied', async () => {
    removeSudoers()
    const dir = userDir ?? tb.env.dir
    const t = Tunnel.start(tb, ['-F', path.join(dir, 'ssh_config'), '-r', 'bastion', tb.env.privateNet], {
      wrap: NOBODY,
      env: { HOME: dir },
      upTimeoutMs: 15_000,
    })
    await expect(t).rejects.toThrow(/NEED_ROOT/)
    // The hint says what works without root at all.
    await expect(t).rejects.toThrow(/hint: -D, --http-proxy, -L and -R need no root; for subnets, run with sudo/)
    expect(await leftoverRules(tb)).toEqual([])
  })
})
