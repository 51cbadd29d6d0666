// Everyday use of a saved tunnel against the real sshd: a profile from config.toml started in
// the background with -f, its default log under $XDG_STATE_HOME, `status` (profile, log, last
// problem, how to stop, this network namespace only), a second instance for the same subnets
// refused, and `stop NAME` over the control socket leaving nothing behind.
import * as fs from 'node:fs'
import os from 'node:os'
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { runCli } from './lib/cli'
import { CLI_BIN, describeRun, run, sleep } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'

e2eDescribe('profiles, -f with a log, status, stop (real CLI, real sshd)', () => {
  let tb: Testbed
  let dir: string

  useTestbed('tev', (t) => (tb = t), {
    setUp: () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-e2e-everyday-'))
    },
    tearDown: () => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true })
    },
  })

  it('up PROFILE -f logs to $XDG_STATE_HOME; status and stop find it by name; a second copy is refused', async () => {
    const config = path.join(dir, 'config.toml')
    fs.writeFileSync(
      config,
      [
        '[work]',
        `ssh-config = "${tb.env.sshConfig}"`,
        'remote = "bastion"',
        `subnets = ["${tb.env.privateNet}"]`,
        `local-forward = ["127.0.0.1:15480:${tb.env.privateIp}:80"]`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    )
    const env = { SUBNET_TUNNEL_CONFIG: config, XDG_STATE_HOME: path.join(dir, 'state') }
    const logFile = path.join(dir, 'state', 'subnet-tunnel', 'work.log')

    const up = await runCli(tb, ['up', 'work', '-f'], { env })
    expect(up.code, describeRun(up)).toBe(0)
    expect(up.stderr).toContain(`, log ${logFile}`)
    const json = await runCli(tb, ['status', '--json'], { env })
    const me = (JSON.parse(json.stdout) as Array<{ pid: number; instanceId: string; profile?: string; netns?: number }>).find((i) => i.profile === 'work')
    expect(me, json.stdout).toBeDefined()
    const pid = me!.pid
    try {
      const web = await curl(tb, tb.url(tb.env.privateIp))
      expect(web.stdout, describeRun(web)).toContain(HELLO)
      // A download in flight: status names its process without --audit-log.
      const slow = curl(tb, tb.url(tb.env.privateIp, '/big.bin'), { extra: ['--limit-rate', '200k', '-o', '/dev/null'], maxTimeS: 4 })
      await sleep(1000)
      const during = await runCli(tb, ['status'], { env })
      expect(during.stdout, during.stdout).toMatch(/#\d+ +transparent +curl \(\d+\) +[\d.:]+ → 10\.251\.0\.10:80 /)
      await slow
      // A refused destination: a warning, which status then shows as the last problem.
      await curl(tb, tb.url(tb.env.privateIp, '/', 81))
      const st = await runCli(tb, ['status'], { env })
      expect(st.stdout).toContain(`instance ${me!.instanceId} · profile work · pid ${pid}`)
      expect(st.stdout).toMatch(new RegExp(`\\n  log +${logFile.replace(/[.]/g, '\\.')} · last problem \\d+s ago: \\[route\\] .*${tb.env.privateIp.replace(/[.]/g, '\\.')}:81`))
      expect(st.stdout).toContain(`  forward    -L 127.0.0.1:15480 → ${tb.env.privateIp}:80\n`)
      expect(st.stdout).toContain('  stop       subnet-tunnel stop work\n')
      expect(st.stdout).toMatch(/up · 0 reconnects · \d+ channels? open/)

      // The same subnets again, here: refused before anything is applied, naming who is there.
      const again = await runCli(tb, ['up', 'work', '-L', '127.0.0.1:15481:127.0.0.1:22'], { env })
      expect(again.code, describeRun(again)).toBe(1)
      expect(again.stderr).toContain(`instance ${me!.instanceId} (pid ${pid}, profile work) already captures ${tb.env.privateNet}`)
      expect(again.stderr).toContain('[ALREADY_RUNNING]')
      expect(again.stderr).toContain('subnet-tunnel stop work')

      // From another network namespace (the host's): not listed, not stoppable; --all labels it.
      const hostEnv = { ...process.env, ...env }
      const elsewhere = await run([process.execPath, CLI_BIN, 'status'], { env: hostEnv })
      expect(elsewhere.stdout).not.toContain(`instance ${me!.instanceId}`)
      expect(elsewhere.stdout).toMatch(/instances? in other network namespaces: subnet-tunnel status --all/)
      const all = await run([process.execPath, CLI_BIN, 'status', '--all'], { env: hostEnv })
      expect(all.stdout).toMatch(new RegExp(`instance ${me!.instanceId} · profile work · pid ${pid} .* · netns ${me!.netns} \\(another network namespace\\)`))
      const notHere = await run([process.execPath, CLI_BIN, 'stop', 'work'], { env: hostEnv })
      expect(notHere.code).toBe(1)
      expect(notHere.stderr).toMatch(/no running instance matches "work" \(\d+ in other network namespaces are not stopped from here\)/)
      expect(fs.existsSync(`/proc/${pid}`)).toBe(true)

      const stop = await runCli(tb, ['stop', 'work'], { env })
      expect(stop.code, describeRun(stop)).toBe(0)
      expect(stop.stderr).toContain(`stopped instance ${me!.instanceId} (pid ${pid}, profile work)`)
      expect(fs.existsSync(`/proc/${pid}`)).toBe(false)
    } finally {
      if (fs.existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL')
    }
    expect(await leftoverRules(tb)).toEqual([])
    const text = fs.readFileSync(logFile, 'utf8')
    expect(fs.statSync(logFile).mode & 0o777).toBe(0o600)
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z subnet-tunnel up: /m)
    expect(text).toMatch(/\[route\] warning: .*:81: /)
    expect(text).toContain('[cli] stop requested (subnet-tunnel stop)')
    const none = await runCli(tb, ['stop'], { env })
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/no running instance/)
  })
})
