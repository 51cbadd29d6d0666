// --owner-only: on a multi-user host only the invoking user's connections ride the tunnel.
// The tunnel runs as root (the owner, uid 0); "another user" is a uid with no account, run with
// setpriv — nothing to create or remove. Without the option every local user is captured: the
// documented default, checked too.
import { expect, it } from 'vitest'
import { remoteArgs, runCli, Tunnel } from './lib/cli'
import { describeRun } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { e2eDescribe } from './lib/guard'
import type { Testbed } from './lib/testbed'
import { useTestbed } from './lib/setup'

const HELLO = 'hello from the private network'
const OTHER = 61000 + Math.floor(Math.random() * 900)
const AS_OTHER = ['setpriv', '--reuid', String(OTHER), '--regid', String(OTHER), '--clear-groups']
// The owner is the invoking user: SUDO_UID (if the tests run under sudo) would name another one.
const NO_SUDO = ['env', '-u', 'SUDO_UID', '-u', 'SUDO_USER']

e2eDescribe('--owner-only (real CLI; another local uid next to the owner)', () => {
  let tb: Testbed

  useTestbed('own', (t) => (tb = t))

  const curl = (as: string[] = []) =>
    tb.exec('client', [...as, 'curl', '-sS', '--connect-timeout', '3', '--max-time', '8', tb.url(tb.env.privateIp)], { timeoutMs: 20_000 })
  /** dig as someone: the answer (+short), or '' when none came. */
  const dig = async (as: string[], server: string, extra: string[] = []): Promise<string> => {
    const r = await tb.exec('client', [...as, 'dig', `@${server}`, tb.env.dnsName, 'A', '+short', '+time=2', '+tries=1', ...extra], { timeoutMs: 20_000 })
    return r.code === 0 ? r.stdout.trim() : ''
  }
  /** The tunnel process's listening sockets of one protocol in the client namespace: `addr:port` each. */
  const socketsOf = async (t: Tunnel, proto: 'u' | 't'): Promise<string[]> => {
    const ss = await tb.exec('client', ['ss', `-Hl${proto}np`])
    return ss.stdout.split('\n').filter((l) => l.includes(`pid=${t.pid},`)).map((l) => l.trim().split(/\s+/)[3])
  }
  const start = (args: string[]) =>
    Tunnel.start(tb, [...remoteArgs(tb), ...args, '--dns', '--ns-hosts', tb.env.unreachableNs, tb.env.privateNet], { wrap: NO_SUDO })
  /** Rules at our tun priority (the tun backend's leftovers). */
  const tunRules = async (): Promise<string[]> => (await tb.exec('client', ['ip', 'rule', 'show'])).stdout.split('\n').filter((l) => /^5354:/.test(l))

  for (const method of ['nft', 'nat', 'tun'] as const) {
    it(`${method}: the owner's connections and DNS are captured; another uid's are not, nor answered on the DNS port`, async () => {
      const t = await start(['--method', method, '--owner-only'])
      try {
        expect(t.upLine).toMatch(/\(owner uid 0 only\)/)
        const mine = await curl()
        expect(mine.stdout, describeRun(mine) + t.stderr).toContain(HELLO)
        expect(await dig([], tb.env.unreachableNs)).toBe(tb.env.privateIp)

        const theirs = await curl(AS_OTHER)
        expect(theirs.code, `uid ${OTHER} rode the owner's tunnel: ${theirs.stdout}`).not.toBe(0)
        expect(await dig(AS_OTHER, tb.env.unreachableNs)).toBe('')
        if (method === 'tun') {
          // The TUN engine answers UDP itself: the interceptor has no UDP socket at all.
          expect(await socketsOf(t, 'u')).toEqual([])
        } else {
          // Straight to the interceptor: dropped by the kernel (UDP), reset (TCP, not redirected).
          const [udp] = await socketsOf(t, 'u')
          const port = udp.split(':').pop()!
          expect(await dig(AS_OTHER, '127.0.0.1', ['-p', port])).toBe('')
          expect(await dig(AS_OTHER, '127.0.0.1', ['-p', port, '+tcp'])).toBe('')
        }
        const st = await runCli(tb, ['status', '--json'])
        expect((JSON.parse(st.stdout) as Array<{ pid: number; ownerUid?: number }>).find((s) => s.pid === t.pid)?.ownerUid).toBe(0)
        expect((await runCli(tb, ['status'])).stdout).toMatch(/capture {4}.*· uid 0 only/)
      } finally {
        expect((await t.stop()).code).toBe(0)
      }
      expect(await leftoverRules(tb)).toEqual([])
      expect(await tunRules()).toEqual([])
    }, 60_000)
  }

  it('without --owner-only every local user rides the tunnel (the default, and status says so)', async () => {
    const t = await start(['--method', 'nft'])
    try {
      const theirs = await curl(AS_OTHER)
      expect(theirs.stdout, describeRun(theirs)).toContain(HELLO)
      expect(await dig(AS_OTHER, tb.env.unreachableNs)).toBe(tb.env.privateIp)
      expect((await runCli(tb, ['status'])).stdout).toMatch(/capture {4}.*· every local user/)
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
  })
})
