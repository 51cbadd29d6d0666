// `exec --only -- CMD`: only CMD and its children are captured (a cgroup v2 of our own), while a
// second process in the same namespace reaches the private network the ordinary way (here: not
// at all, the bastion does not route). Both cgroup v2 layouts: unified at /sys/fs/cgroup (nft's
// `socket cgroupv2`) and hybrid at /sys/fs/cgroup/unified (nft cannot resolve paths there:
// iptables' `-m cgroup --path`, which the kernel resolves). No other user can put a process into
// the cgroup, and nothing is left behind. The same with --method tun, whose routes follow a mark
// the cgroup's packets get (nft on the unified layout, iptables' mangle table on the hybrid).
// (`ip netns exec` gives the CLI a fresh /sys without cgroups; a wrapper mounts cgroup v2 in that
// private mount namespace, as a host has it.)
import * as fs from 'node:fs'
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { cliArgv, cliEnv, remoteArgs, runCli, Tunnel, waitGone } from './lib/cli'
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

  /** The tun backend's rules (priority 5354) and devices in the client namespace. */
  const tunObjects = async (): Promise<string[]> => {
    const [rules, links] = await Promise.all([tb.exec('client', ['ip', 'rule', 'show']), tb.exec('client', ['ip', '-o', 'link', 'show'])])
    return [...rules.stdout.split('\n').filter((l) => /^5354:/.test(l)), ...links.stdout.split('\n').filter((l) => /alias subnet-tunnel-/.test(l))]
  }

  // tun: the command's packets are marked (nft where it resolves the cgroup, iptables on the
  // hybrid layout) and routed into the device by that mark. `all.rp_filter=1` in the namespace
  // makes the reverse-path check strict for root's device too: replies then need the mark back.
  const CASES = [
    ['unified', 'nft', ['--method', 'nft'], undefined],
    ['hybrid', 'nat', [], undefined],
    ['unified', 'tun', ['--method', 'tun'], /^table inet subnet-tunnel-/m],
    ['hybrid', 'tun', ['--method', 'tun'], /^-N subnet-tunnel-/m],
  ] as const
  for (const [layout, method, args, markPart] of CASES) {
    it(`${layout} cgroup v2 (${method}): the command is captured, a second process in the namespace is not, no other user can join, nothing left`, async () => {
      const marker = path.join(tb.env.dir, `only-${layout}-${method}`)
      fs.rmSync(marker, { force: true })
      if (method === 'tun') await tb.exec('client', ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=1'])
      // The command: one request through the tunnel, then it waits while the test looks around.
      const script = `curl -sS --max-time 5 "$1" > "$2.body" && touch "$2" && sleep 4`
      const cmd = runOnly(layout, ['-v', ...args], ['sh', '-c', script, 'sh', tb.url(tb.env.privateIp), marker])
      try {
        await look(marker)
        if (markPart) {
          const fw = await tb.exec('client', layout === 'unified' ? ['nft', 'list', 'tables'] : ['iptables', '-t', 'mangle', '-S'])
          expect(fw.stdout).toMatch(markPart)
        }
      } finally {
        // Never leave it running into the next test (its rules would capture that one's traffic).
        await cmd.catch(() => undefined)
        if (method === 'tun') await tb.exec('client', ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=0'])
      }
      const r = await cmd
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stderr).toMatch(new RegExp(`method ${method}`))
      expect(ourCgroups()).toEqual([])
      expect(await leftoverRules(tb)).toEqual([])
      expect(await tunObjects()).toEqual([])
    })
  }

  it('tun: kill -9 of the tunnel, its helper and the command leaves device, rules, mark chain and cgroup; `cleanup` removes them all', async () => {
    const wrap = ['sh', '-c', `${LAYOUTS.hybrid} && exec "$@"`, 'sh']
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--method', 'tun', tb.env.privateNet, 'exec', '--only', '--', 'sleep', '60'], { wrap })
    const kids = t.descendants()
    for (const pid of kids) process.kill(pid, 'SIGSTOP')
    process.kill(t.pid, 'SIGKILL')
    for (const pid of kids) process.kill(pid, 'SIGKILL')
    await t.exited
    expect(await waitGone(kids, 5_000, { reaped: true })).toEqual([])
    expect((await tunObjects()).length).toBeGreaterThan(0)
    expect(await leftoverRules(tb)).not.toEqual([])
    expect(ourCgroups()).toHaveLength(1)
    // cleanup, where it sees cgroup v2 as the tunnel did
    const r = await run(cliArgv(tb, ['cleanup'], wrap), { timeoutMs: 30_000, env: cliEnv() })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toMatch(/removed instance [0-9a-z]+ \(tun\)/)
    expect(await tunObjects()).toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
    expect(ourCgroups()).toEqual([])
  })

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

      // status does not claim "every local user"
      expect((await runCli(tb, ['status'])).stdout).toMatch(/capture {4}.*· the exec --only command only\n/)

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

  it('refused clearly where no cgroup match can work: nft on a hybrid layout, no cgroup v2, --fail-closed (tun too)', async () => {
    const tun = await runOnly('unified', ['--method', 'tun', '--fail-closed'], ['true'])
    expect(tun.stderr).toMatch(/--fail-closed does not go with exec --only/)
    const nft = await runOnly('hybrid', ['--method', 'nft'], ['true'])
    expect(nft.stderr).toMatch(/nft finds cgroups under \/sys\/fs\/cgroup only/)
    const none = await run(cliArgv(tb, [...remoteArgs(tb), tb.env.privateNet, 'exec', '--only', '--', 'true']), { timeoutMs: 30_000, env: cliEnv() })
    expect(none.stderr).toMatch(/exec --only needs cgroup v2, and none is mounted here/)
    for (const x of [tun, nft, none]) expect(x.code).not.toBe(0)
  })
})
