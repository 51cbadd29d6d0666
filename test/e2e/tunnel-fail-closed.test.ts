// --fail-closed, end to end: with sshd gone the kernel refuses connections to the tunnelled
// network at once (under 100 ms) and nothing for it leaves on the client's own link (captured
// there with AF_PACKET, like tcpdump); tunnelled names are answered REFUSED. When SSH is back
// the network is open again. After SIGKILL the guard stays until `subnet-tunnel cleanup`.
import { spawn } from 'node:child_process'
import * as path from 'node:path'
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun, run } from './lib/exec'
import { killSshd, startSshd, waitForLog } from './lib/faults'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'
import { curl, firstSuccess } from './lib/traffic'

const HELLO = 'hello from the private network'
const GUARD_PRIORITY = '5353'

/** AF_PACKET capture on the client's link c0: packets this host sent to `net`. */
function captureLink(tb: Testbed, net: string): { ready: Promise<void>; stop(): Promise<{ sent: number; samples: string[] }> } {
  const argv = tb.nsArgv('client', ['python3', path.join(__dirname, 'lib', 'link-capture.py'), 'c0', net])
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s))
  const ready = new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (out.includes('"ready"')) {
        clearInterval(t)
        resolve()
      } else if (child.exitCode !== null) {
        clearInterval(t)
        reject(new Error(`link capture: ${err}`))
      }
    }, 20)
  })
  return {
    ready,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await exited
      const last = out.trim().split('\n').pop() ?? ''
      return JSON.parse(last) as { sent: number; samples: string[] }
    },
  }
}

/** Connects to host:port `n` times from the client namespace: how each attempt ended, in ms. */
async function connectTimes(tb: Testbed, host: string, port: number, n: number): Promise<Array<{ code: string; ms: number }>> {
  const script = `
    const net = require('net'); const out = []
    const one = () => new Promise((res) => { const t0 = performance.now(); const s = net.connect({ host: ${JSON.stringify(host)}, port: ${port} })
      const end = (code) => { s.destroy(); out.push({ code, ms: Math.round(performance.now() - t0) }); res() }
      s.setTimeout(5000, () => end('TIMEOUT')); s.on('connect', () => end('CONNECTED')); s.on('error', (e) => end(e.code)) })
    ;(async () => { for (let i = 0; i < ${n}; i++) await one(); console.log(JSON.stringify(out)) })()`
  const r = await tb.exec('client', [process.execPath, '-e', script], { timeoutMs: 60_000 })
  if (r.code !== 0) throw new Error(describeRun(r))
  return JSON.parse(r.stdout) as Array<{ code: string; ms: number }>
}

async function guardRules(tb: Testbed): Promise<string> {
  const r = await tb.exec('client', ['ip', 'rule', 'show'])
  return r.stdout.split('\n').filter((l) => l.startsWith(`${GUARD_PRIORITY}:`)).join('\n')
}

e2eDescribe('--fail-closed (real CLI, real sshd, real kernel)', () => {
  let tb: Testbed

  useTestbed('tx', (t) => (tb = t), {
    cleanup: true,
    tearDown: async (t) => {
      if (t) await startSshd(t).catch(() => undefined)
    },
  })

  const dig = (name: string) => tb.exec('client', ['dig', '+time=2', '+tries=1', `@${tb.env.unreachableNs}`, name], { timeoutMs: 10_000 })

  for (const method of ['nft', 'nat', 'tun']) it(`--method ${method}: sshd stopped: refused in under 100 ms, nothing leaves on the link, names REFUSED; open again when SSH is back`, async () => {
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=2', '--fail-closed',
      '--method', method, '--ns-hosts', tb.env.unreachableNs, tb.env.privateNet])
    try {
      const ok = await curl(tb, tb.url(tb.env.privateIp))
      expect(ok.stdout, describeRun(ok)).toContain(HELLO)
      expect(await guardRules(tb)).toBe('') // open while SSH is up
      const st = await runCli(tb, ['status'])
      expect(st.stdout).toMatch(/guard\s+fail-closed, armed/)

      const cap = captureLink(tb, tb.env.privateNet)
      await cap.ready
      await killSshd(tb)
      expect(await waitForLog(() => t.stderr, /fail-closed: SSH is down/, 15_000), t.stderr).toBeDefined()
      expect(await guardRules(tb)).toMatch(/lookup \d+/)
      const tries = await connectTimes(tb, tb.env.privateIp, tb.env.httpPort, 5)
      for (const r of tries) {
        expect(r.code, JSON.stringify(tries)).toBe('EHOSTUNREACH')
        expect(r.ms, JSON.stringify(tries)).toBeLessThan(100)
      }
      const d = await dig(tb.env.dnsName)
      expect(d.stdout, describeRun(d)).toMatch(/status: REFUSED/)
      const during = await runCli(tb, ['status'])
      expect(during.stdout).toMatch(/guard\s+fail-closed, CLOSED/)
      const seen = await cap.stop()
      expect(seen, 'packets to the private network on the client link').toEqual({ sent: 0, samples: [] })

      await startSshd(tb)
      expect(await waitForLog(() => t.stderr, /fail-closed: SSH is back/, 30_000), t.stderr).toBeDefined()
      await firstSuccess(tb, tb.url(tb.env.privateIp), 10_000)
      expect(await guardRules(tb)).toBe('')
    } finally {
      await t.stop()
    }
    // A normal exit fails closed too: the guard stays until cleanup.
    expect(await guardRules(tb)).toMatch(/lookup \d+/)
    const c = await runCli(tb, ['cleanup'])
    expect(c.stdout + c.stderr, describeRun(c)).toMatch(/removed fail-closed guard of instance/)
    expect(await guardRules(tb)).toBe('')
  })

  it('SIGKILL: the capture is gone but the guard stays until `subnet-tunnel cleanup`; nothing leaves meanwhile', async () => {
    // (A guard the previous test left after a failure would refuse this one's first request.)
    await runCli(tb, ['cleanup'])
    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--fail-closed', tb.env.privateNet])
    const ok = await curl(tb, tb.url(tb.env.privateIp))
    expect(ok.stdout, describeRun(ok)).toContain(HELLO)
    const cap = captureLink(tb, tb.env.privateNet)
    await cap.ready
    process.kill(t.pid, 'SIGKILL')
    await t.exited
    // The helper notices its stdin closing and takes the capture down, guard closed first.
    const deadline = Date.now() + 10_000
    while (!(await guardRules(tb)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(await guardRules(tb)).toMatch(/lookup \d+/)
    await new Promise((r) => setTimeout(r, 1000))
    const tries = await connectTimes(tb, tb.env.privateIp, tb.env.httpPort, 3)
    for (const r of tries) {
      expect(r.code, JSON.stringify(tries)).toBe('EHOSTUNREACH')
      expect(r.ms).toBeLessThan(100)
    }
    expect(await cap.stop()).toEqual({ sent: 0, samples: [] })
    const st = await runCli(tb, ['status'])
    expect(st.stdout).toMatch(/fail-closed guard left by an exited instance/)
    // Only an explicit cleanup lifts it; then connections go the ordinary way again (here:
    // the bastion does not route, so they time out rather than being refused).
    const c = await runCli(tb, ['cleanup'])
    expect(c.stdout + c.stderr, describeRun(c)).toMatch(/removed fail-closed guard of instance/)
    expect(await guardRules(tb)).toBe('')
    const after = await run(tb.nsArgv('client', ['ip', 'route', 'get', tb.env.privateIp]))
    expect(after.stdout).not.toMatch(/unreachable/)
  })
})
