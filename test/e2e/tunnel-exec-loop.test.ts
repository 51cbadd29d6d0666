// `exec` is made for cron: it must end every single time. It used to hang about once in 100
// runs (more under load) when the command's connection went through the tunnel: the command
// had exited, but our process spun at 100 % CPU in Node's exit-time cleanup, forever (a
// socket reset while its FIN was pending leaked its handle: see src/router/socket-reset.ts
// and src/cli/exit-when-done.ts). Here `exec` runs again and again through each front-end,
// every run bounded by a timeout, and no run may hang or lose the command's exit code.
//
// The race is narrow, so a short loop proves little about the old code (the unit tests in
// test/router/{socket-reset,pipe,local-forward}.test.ts and test/cli/exit-when-done.test.ts
// reproduce the mechanism deterministically); the long version shows the rate:
//   SUBNET_TUNNEL_E2E_EXEC_RUNS=300 npx vitest run --project e2e test/e2e/tunnel-exec-loop.test.ts
import { spawn } from 'node:child_process'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, sleep } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'

/** Runs per front-end: small in CI (the file stays well under a minute), large on demand. */
const RUNS = Number(process.env.SUBNET_TUNNEL_E2E_EXEC_RUNS) || 12
/** A normal run takes well under a second; a hang never ends. */
const RUN_TIMEOUT_MS = 20_000

e2eDescribe(`exec ends every time: ${RUNS} runs per front-end (real CLI, real sshd)`, () => {
  let tb: Testbed

  useTestbed('tx', (t) => (tb = t))

  const fronts: { name: string; args: (tb: Testbed) => string[]; curl: (tb: Testbed) => string[] }[] = [
    { name: '-L', args: (tb) => ['-L', `15432:${tb.env.privateIp}:${tb.env.httpPort}`], curl: () => ['http://127.0.0.1:15432/'] },
    { name: '-D', args: () => ['-D', '11090'], curl: (tb) => ['--socks5-hostname', '127.0.0.1:11090', tb.url(tb.env.privateIp)] },
    { name: 'the transparent listener', args: (tb) => [tb.env.privateNet], curl: (tb) => [tb.url(tb.env.privateIp)] },
  ]

  for (const f of fronts) {
    it(`exec with a connection through ${f.name}: never hangs, passes the command's exit code through`, async () => {
      const hangs: string[] = []
      const wrong: string[] = []
      const ms: number[] = []
      for (let i = 0; i < RUNS; i++) {
        // The command's own code (3..7) proves both that the connection worked and that it is passed on.
        const code = 3 + (i % 5)
        const cmd = ['sh', '-c', `curl -sSf --max-time 5 -o /dev/null "$@" && exit ${code}`, 'sh', ...f.curl(tb)]
        const r = await runCli(tb, ['-q', ...remoteArgs(tb), ...f.args(tb), 'exec', '--', ...cmd], { timeoutMs: RUN_TIMEOUT_MS })
        ms.push(r.ms)
        if (r.timedOut) hangs.push(`run ${i + 1}: ${describeRun(r)}`)
        else if (r.code !== code) wrong.push(`run ${i + 1}: wanted exit ${code}; ${describeRun(r)}`)
      }
      ms.sort((a, b) => a - b)
      console.log(
        `[measure] exec through ${f.name}: ${RUNS} runs, ${hangs.length} hung, ${wrong.length} wrong exit code; ` +
          `median ${ms[Math.floor(ms.length / 2)]} ms, slowest ${ms[ms.length - 1]} ms`,
      )
      expect(hangs, 'runs that did not end within 20 s').toEqual([])
      expect(wrong.slice(0, 5)).toEqual([])
      expect(await leftoverRules(tb)).toEqual([])
    }, RUNS * (RUN_TIMEOUT_MS + 5_000))
  }

  // The other ways out go through the same teardown: a signal while connections through every
  // front-end open and close (some caught with their FIN pending, as at the end of exec).
  const STOPS = Math.max(4, Math.ceil(RUNS / 3))
  it(`SIGTERM or SIGINT while connections come and go: exits 0 every time (${STOPS} stops)`, async () => {
    const url = tb.url(tb.env.privateIp)
    const clientLoop =
      'while :; do curl -s --max-time 2 -o /dev/null http://127.0.0.1:15433/; ' +
      `curl -s --max-time 2 -o /dev/null --socks5-hostname 127.0.0.1:11091 ${url}; curl -s --max-time 2 -o /dev/null ${url}; done`
    const bad: string[] = []
    for (let i = 0; i < STOPS; i++) {
      const t = await Tunnel.start(tb, [...remoteArgs(tb), '-L', `15433:${tb.env.privateIp}:${tb.env.httpPort}`, '-D', '11091', tb.env.privateNet])
      const load = spawn('ip', ['netns', 'exec', tb.ns('client'), 'sh', '-c', clientLoop], { stdio: 'ignore' })
      try {
        await sleep(200 + ((i * 137) % 500))
        const signal = i % 2 === 0 ? 'SIGTERM' : 'SIGINT'
        const t0 = Date.now()
        const exit = await t.stop(signal, RUN_TIMEOUT_MS)
        if (exit.code !== 0) bad.push(`${signal} #${i + 1}: exit ${exit.code}, signal ${exit.signal} after ${Date.now() - t0} ms; ${t.stderr.trim().slice(-800)}`)
      } finally {
        load.kill('SIGKILL')
      }
    }
    expect(bad).toEqual([])
    expect(await leftoverRules(tb)).toEqual([])
  }, STOPS * (RUN_TIMEOUT_MS + 15_000))
})
