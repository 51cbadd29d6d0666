// `exec --only -- CMD`: only CMD and its children are captured (a cgroup v2 of our own), while a
// second process in the same namespace reaches the private network the ordinary way (here: not
// at all, the bastion does not route). Both cgroup v2 layouts: unified at /sys/fs/cgroup (nft's
// `socket cgroupv2`) and hybrid at /sys/fs/cgroup/unified (nft cannot resolve paths there:
// iptables' `-m cgroup --path`, which the kernel resolves). No other user can put a process into
// the cgroup, and nothing is left behind. (`ip netns exec` gives the CLI a fresh /sys without
// cgroups; a wrapper mounts cgroup v2 in that private mount namespace, as a host has it.)
import * as fs from 'node:fs'
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { cliArgv, cliEnv, remoteArgs } from './lib/cli'
import { describeRun, run, type RunResult } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'

const HELLO = 'hello from the private network'

const LAYOUTS = {
  unified: 'mount -t cgroup2 none /sys/fs/cgroup',
  hybrid: 'mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified',
}

/** Where this (test) process sees cgroup v2: the same hierarchy the CLI's private mount shows. */
function hostCgroup2(): string {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ')
    if (post?.split(' ')[0] === 'cgroup2') return pre!.split(' ')[4]!
  }
  throw new Error('no cgroup v2 on this machine')
}

function ourCgroups(): string[] {
  return fs.readdirSync(hostCgroup2()).filter((n) => /^subnet-tunnel-/.test(n))
}

e2eDescribe('exec --only (real CLI, real sshd, real kernel)', () => {
  let tb: Testbed

  useTestbed('to', (t) => (tb = t), { cleanup: true })

  const runOnly = (layout: keyof typeof LAYOUTS, args: string[], cmd: string[]): Promise<RunResult> =>
    run(cliArgv(tb, [...remoteArgs(tb), ...args, tb.env.privateNet, 'exec', '--only', '--', ...cmd], ['sh', '-c', `${LAYOUTS[layout]} && exec "$@"`, 'sh']), {
      timeoutMs: 60_000,
      env: cliEnv(),
    })

  for (const [layout, method, args] of [['unified', 'nft', ['--method', 'nft']], ['hybrid', 'nat', []]] as const) {
    it(`${layout} cgroup v2 (${method}): the command is captured, a second process in the namespace is not, no other user can join, nothing left`, async () => {
      const marker = path.join(tb.env.dir, `only-${layout}`)
      fs.rmSync(marker, { force: true })
      // The command: one request through the tunnel, then it waits while the test looks around.
      const script = `curl -sS --max-time 5 "$1" > "$2.body" && touch "$2" && sleep 4`
      const cmd = runOnly(layout, ['-v', ...args], ['sh', '-c', script, 'sh', tb.url(tb.env.privateIp), marker])
      try {
        await look(marker)
      } finally {
        // Never leave it running into the next test (its rules would capture that one's traffic).
        await cmd.catch(() => undefined)
      }
      const r = await cmd
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stderr).toMatch(new RegExp(`method ${method}`))
      expect(ourCgroups()).toEqual([])
      expect(await leftoverRules(tb)).toEqual([])
    })
  }

  /** While the command runs: it got through, a second process does not, the cgroup is closed to others. */
  async function look(marker: string): Promise<void> {
      const deadline = Date.now() + 30_000
      while (!fs.existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(fs.existsSync(marker), 'the command got through the tunnel').toBe(true)
      expect(fs.readFileSync(`${marker}.body`, 'utf8')).toContain(HELLO)

      // A second process, same namespace, same destination: not captured.
      const other = await tb.exec('client', ['curl', '-sS', '--connect-timeout', '2', '--max-time', '3', tb.url(tb.env.privateIp)], { timeoutMs: 10_000 })
      expect(other.code, describeRun(other)).not.toBe(0)
      expect(other.stdout).not.toContain(HELLO)

      // The cgroup: root's, and another user cannot move a process into it.
      const [name] = ourCgroups()
      expect(name).toBeDefined()
      const dir = path.join(hostCgroup2(), name!)
      expect(fs.statSync(dir).uid).toBe(0)
      expect(fs.statSync(path.join(dir, 'cgroup.procs')).mode & 0o022).toBe(0)
      const join = await run(['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', 'sh', '-c', `echo $$ > ${dir}/cgroup.procs`])
      expect(join.code, describeRun(join)).not.toBe(0)
  }

  it('a child the command left running is killed with the cgroup (never left to run uncaptured)', async () => {
    const pidFile = path.join(tb.env.dir, 'only-orphan.pid')
    const r = await runOnly('hybrid', [], ['sh', '-c', `sleep 300 & echo $! > "$1"`, 'sh', pidFile])
    expect(r.code, describeRun(r)).toBe(0)
    const pid = Number(fs.readFileSync(pidFile, 'utf8'))
    expect(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')).toBe(false)
    expect(ourCgroups()).toEqual([])
  })

  it('refused clearly where no cgroup match can work: --method tun, nft on a hybrid layout, no cgroup v2', async () => {
    const tun = await runOnly('unified', ['--method', 'tun'], ['true'])
    expect(tun.stderr).toMatch(/exec --only needs Linux and --method nft or nat/)
    const nft = await runOnly('hybrid', ['--method', 'nft'], ['true'])
    expect(nft.stderr).toMatch(/nft finds cgroups under \/sys\/fs\/cgroup only/)
    const none = await run(cliArgv(tb, [...remoteArgs(tb), tb.env.privateNet, 'exec', '--only', '--', 'true']), { timeoutMs: 30_000, env: cliEnv() })
    expect(none.stderr).toMatch(/exec --only needs cgroup v2, and none is mounted here/)
    for (const x of [tun, nft, none]) expect(x.code).not.toBe(0)
  })
})
