// Gateway mode: a container namespace behind a bridge in the client (like docker0) reaches the
// private network through the client's tunnel, without any proxy settings in the container.
import { afterAll, beforeAll, expect, it } from 'vitest'
import { assertCliBuilt, killAllTunnels, remoteArgs, Tunnel } from './lib/cli'
import { describeRun, run } from './lib/exec'
import { leftoverRules } from './lib/firewall'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'

const HELLO = 'hello from the private network'

e2eDescribe('gateway mode (real CLI, a container namespace behind a bridge)', () => {
  let tb: Testbed
  let ctr = ''

  const inCtr = (argv: string[]) => run(['ip', 'netns', 'exec', ctr, ...argv], { timeoutMs: 20_000 })
  const curlFromCtr = (url: string) => inCtr(['curl', '-sS', '--connect-timeout', '3', '--max-time', '8', url])

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('tg'))
    ctr = `st-${tb.name}-ctr`
    const c = tb.ns('client')
    const steps: string[][] = [
      ['ip', 'netns', 'add', ctr],
      ['ip', '-n', c, 'link', 'add', 'br0', 'type', 'bridge'],
      ['ip', '-n', c, 'addr', 'add', '10.252.0.1/24', 'dev', 'br0'],
      ['ip', '-n', c, 'addr', 'add', 'fd00:252::1/64', 'dev', 'br0', 'nodad'],
      ['ip', '-n', c, 'link', 'set', 'br0', 'up'],
      ['ip', '-n', c, 'link', 'add', 'vctr', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr],
      ['ip', '-n', c, 'link', 'set', 'vctr', 'master', 'br0', 'up'],
      ['ip', '-n', ctr, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', ctr, 'addr', 'add', '10.252.0.2/24', 'dev', 'eth0'],
      ['ip', '-n', ctr, 'addr', 'add', 'fd00:252::2/64', 'dev', 'eth0', 'nodad'],
      ['ip', '-n', ctr, 'link', 'set', 'eth0', 'up'],
      ['ip', '-n', ctr, 'route', 'add', 'default', 'via', '10.252.0.1'],
      ['ip', '-n', ctr, '-6', 'route', 'add', 'default', 'via', 'fd00:252::1'],
    ]
    for (const argv of steps) {
      const r = await run(argv)
      if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`)
    }
  })
  afterAll(async () => {
    await killAllTunnels()
    if (ctr) await run(['ip', 'netns', 'del', ctr])
    await tb?.down()
  })

  it('without --gateway the container is not captured; with it, it reaches the private network (v4, v6)', async () => {
    const plain = await Tunnel.start(tb, [...remoteArgs(tb), tb.env.privateNet])
    try {
      const r = await curlFromCtr(tb.url(tb.env.privateIp))
      expect(r.code, 'local-only capture does not reach the container').not.toBe(0)
    } finally {
      await plain.stop()
    }

    const t = await Tunnel.start(tb, [...remoteArgs(tb), '--gateway', tb.env.privateNet, tb.env.privateNet6])
    try {
      expect(t.upLine).toMatch(/gateway/)
      const v4 = await curlFromCtr(tb.url(tb.env.privateIp))
      expect(v4.stdout, describeRun(v4) + t.stderr).toContain(HELLO)
      const v6 = await curlFromCtr(tb.url(tb.env.privateIp6))
      expect(v6.stdout, describeRun(v6) + t.stderr).toContain(HELLO)
      // The client itself still works too.
      const local = await tb.exec('client', ['curl', '-sS', '--max-time', '5', tb.url(tb.env.privateIp)])
      expect(local.stdout).toContain(HELLO)
      // A direct connection to the listener from the container is refused, not dialled.
      const port = /listener 0\.0\.0\.0:(\d+)/.exec(t.upLine)![1]
      const direct = await curlFromCtr(`http://10.252.0.1:${port}/`)
      expect(direct.code).not.toBe(0)
    } finally {
      expect((await t.stop()).code).toBe(0)
    }
    expect(await leftoverRules(tb)).toEqual([])
    const after = await curlFromCtr(tb.url(tb.env.privateIp))
    expect(after.code).not.toBe(0)
  })
})
