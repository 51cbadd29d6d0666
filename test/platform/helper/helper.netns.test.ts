/**
 * Root-only: the real helper, real iptables/nft, inside a throwaway network namespace.
 * Never touches the machine's own namespace: every helper runs under `ip netns exec`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { memoryLogger } from '../../../src/observe/logger'
import { startHelper, type HelperClient } from '../../../src/platform/helper/helper-client'
import type { CaptureSpec, MethodName } from '../../../src/platform/firewall/types'
import { canUseNetns, compilePlatform, Netns, nodeEnv, tempDir, waitFor } from '../netns-harness'

const enabled = canUseNetns()

describe.skipIf(!enabled)('privileged helper in a network namespace', () => {
  let ns: Netns
  let work: string
  let stateDir: string
  let platformDir: string
  const started: ChildProcess[] = []
  const clients: HelperClient[] = []

  beforeAll(() => {
    work = tempDir('st-plat-')
    stateDir = path.join(work, 'state')
    platformDir = compilePlatform(path.join(work, 'build'))
    ns = new Netns()
    // A route for the "remote" networks, else connect() fails with ENETUNREACH before the
    // nat OUTPUT hook ever sees the packet.
    // (a veth pair: the dummy module is not available everywhere)
    ns.sh('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1')
    ns.sh('ip', 'link', 'set', 'd1', 'up')
    ns.sh('ip', 'link', 'set', 'd0', 'up')
    ns.sh('ip', 'addr', 'add', '10.98.0.1/24', 'dev', 'd0')
    ns.sh('ip', '-6', 'addr', 'add', 'fd98::1/64', 'dev', 'd0', 'nodad')
    ns.sh('ip', 'route', 'add', '10.99.0.0/24', 'dev', 'd0')
    ns.sh('ip', '-6', 'route', 'add', 'fd99::/64', 'dev', 'd0')
  }, 120_000)

  afterAll(async () => {
    try {
      for (const c of clients) await c.close().catch(() => {})
      for (const p of started) {
        if (p.exitCode === null && p.signalCode === null && p.pid) p.kill('SIGKILL')
      }
    } finally {
      ns?.destroy()
      if (work) fs.rmSync(work, { recursive: true, force: true })
    }
  })

  const helperPath = (): string => path.join(platformDir, 'helper/helper-main.js')

  async function helper(): Promise<HelperClient> {
    const c = await startHelper({
      log: memoryLogger(),
      env: nodeEnv(stateDir),
      launch: { command: 'ip', args: ['netns', 'exec', ns.name, process.execPath, helperPath()], viaSudo: false, interactive: false },
    })
    clients.push(c)
    return c
  }

  const spec = (id: string, port = 4000, include = ['10.99.0.0/24', 'fd99::/64']): CaptureSpec => ({
    instanceId: id,
    listenPort: port,
    include: include.map(parseCidr),
    exclude: [parseCidr('10.99.0.200/32')],
  })
  const journalIds = (): string[] => (fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : [])

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: probe, apply (v4+v6), visible in the namespace; close stdin → all gone`, async () => {
      const h = await helper()
      expect(await h.probe(method, { ipv6: true })).toEqual({ ok: true })
      const id = `c${method}`
      const r = await h.apply(method, spec(id))
      expect(r).toMatchObject({ method, object: `subnet-tunnel-${id}`, families: [4, 6] })
      const rules = ns.rules()
      if (method === 'nft') {
        expect(rules).toContain(`table inet subnet-tunnel-${id}`)
        expect(rules).toContain('ip daddr 10.99.0.0/24 meta l4proto tcp redirect to :4000')
        expect(rules).toContain('ip6 daddr fd99::/64 meta l4proto tcp redirect to :4000')
      } else {
        expect(rules).toContain(`-A OUTPUT -j subnet-tunnel-${id}`)
        expect(rules).toContain(`-A subnet-tunnel-${id} -d 10.99.0.0/24 -p tcp -j REDIRECT --to-ports 4000`)
        expect(rules).toContain(`-A subnet-tunnel-${id} -d fd99::/64 -p tcp -j REDIRECT --to-ports 4000`)
      }
      expect(journalIds()).toEqual([`${id}.json`])
      // a second instance coexists and its revert leaves ours alone
      const h2 = await helper()
      await h2.apply(method, spec(`${id}b`, 4001))
      expect(ns.rules()).toContain(`subnet-tunnel-${id}b`)
      await h2.revert()
      expect(ns.rules()).not.toContain(`subnet-tunnel-${id}b`)
      expect(ns.rules()).toContain(`subnet-tunnel-${id}`)
      await h2.close()

      const exit = await h.close()
      expect(exit).toMatchObject({ code: 0, expected: true })
      expect(ns.rules()).not.toContain('subnet-tunnel-')
      expect(journalIds()).toEqual([])
    })
  }

  it('a failing apply is reverted by name and leaves no journal; leftovers never block a start', async () => {
    ns.sh('iptables', '-w', '-t', 'nat', '-N', 'subnet-tunnel-clash1')
    const h = await helper()
    // the helper's startup cleanup removed the unowned chain: a leftover never blocks a start
    expect(h.startupCleanup?.removed).toEqual(['iptables nat subnet-tunnel-clash1'])
    ns.sh('iptables', '-w', '-t', 'nat', '-N', 'subnet-tunnel-clash1')
    await expect(h.apply('nat', spec('clash1'))).rejects.toMatchObject({ code: 'FW_APPLY', message: expect.stringMatching(/^nat: iptables: -N: /) })
    expect(journalIds()).toEqual([])
    // The revert works by name: `subnet-tunnel-<id>` is reserved for us, so the clashing chain
    // (a leftover by definition) goes too.
    expect(ns.rules()).not.toContain('subnet-tunnel-')
    await h.close()
  })

  it('kill -9 of the main process → the helper reverts within 2 s', async () => {
    // A tiny parent that starts the helper, applies, reports, and then just waits to be killed.
    const parentJs = path.join(work, 'parent.js')
    fs.writeFileSync(parentJs, `
      const { spawn } = require('child_process')
      const h = spawn('ip', ['netns', 'exec', ${JSON.stringify(ns.name)}, process.execPath, ${JSON.stringify(helperPath())}], { stdio: ['pipe', 'pipe', 'inherit'] })
      let buf = ''
      h.stdout.on('data', (d) => {
        buf += d
        for (const line of buf.split('\\n').slice(0, -1)) {
          const m = JSON.parse(line)
          if (m.ready) h.stdin.write(JSON.stringify({ id: 1, op: 'apply', method: 'nft', spec: { instanceId: 'kill9main', listenPort: 4000, include: ['10.99.0.0/24'], exclude: [] } }) + '\\n')
          if (m.id === 1) console.log(JSON.stringify({ helperPid: h.pid, ok: m.ok }))
        }
        buf = buf.slice(buf.lastIndexOf('\\n') + 1)
      })
      setInterval(() => {}, 1000)
    `)
    const parent = spawn(process.execPath, [parentJs], { env: nodeEnv(stateDir), stdio: ['ignore', 'pipe', 'inherit'] })
    started.push(parent)
    const line = await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString())))
    const { helperPid, ok } = JSON.parse(line) as { helperPid: number; ok: boolean }
    expect(ok).toBe(true)
    expect(ns.rules()).toContain('subnet-tunnel-kill9main')
    process.kill(parent.pid!, 'SIGKILL')
    const t0 = Date.now()
    expect(await waitFor(() => !ns.rules().includes('subnet-tunnel-'), 2000)).toBe(true)
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(await waitFor(() => !fs.existsSync(`/proc/${helperPid}`), 2000)).toBe(true)
    expect(journalIds()).toEqual([])
  })

  it('kill -9 of the helper → rules stay, onExit fires; the next helper cleans up', async () => {
    const h = await helper()
    const exited = new Promise((resolve) => h.onExit(resolve))
    await h.apply('nat', spec('kill9help'))
    await h.apply('nat', spec('x')).catch(() => {}) // (refused: already applied)
    process.kill(h.pid!, 'SIGKILL')
    expect(await exited).toMatchObject({ signal: 'SIGKILL', expected: false })
    await expect(h.revert()).rejects.toMatchObject({ code: 'HELPER' })
    expect(ns.rules()).toContain('subnet-tunnel-kill9help')
    expect(journalIds()).toEqual(['kill9help.json'])

    const h2 = await helper()
    expect(h2.startupCleanup).toMatchObject({ removed: ['instance kill9help (nat)'], warnings: [] })
    expect(ns.rules()).not.toContain('subnet-tunnel-')
    expect(journalIds()).toEqual([])
    // and the explicit cleanup op finds nothing more to do
    expect(await h2.cleanup()).toEqual({ removed: [], kept: 0, warnings: [] })
    await h2.close()
  })

  it('SIGTERM to the helper → it reverts and exits; the client is told', async () => {
    const h = await helper()
    const exited = new Promise((resolve) => h.onExit(resolve))
    await h.apply('nft', spec('sigterm'))
    expect(ns.rules()).toContain('subnet-tunnel-sigterm')
    process.kill(h.pid!, 'SIGTERM')
    expect(await exited).toMatchObject({ code: 0, expected: false, clean: true })
    expect(ns.rules()).not.toContain('subnet-tunnel-')
    expect(journalIds()).toEqual([])
    // The main process's own teardown comes second (both got SIGTERM): not reported as a failure.
    expect(await h.revert()).toEqual({ reverted: true })
  })

  it('SIGINT (Ctrl-C reaches the whole process group) is left to the main process: rules stay until it asks', async () => {
    const h = await helper()
    let exitedEarly = false
    h.onExit(() => (exitedEarly = true))
    await h.apply('nft', spec('sigint'))
    process.kill(h.pid!, 'SIGINT')
    await new Promise((r) => setTimeout(r, 300))
    expect(exitedEarly).toBe(false)
    expect(ns.rules()).toContain('subnet-tunnel-sigint')
    expect(await h.revert()).toEqual({ reverted: true })
    expect(ns.rules()).not.toContain('subnet-tunnel-')
    expect(await h.close()).toMatchObject({ code: 0, expected: true })
  })

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: SO_ORIGINAL_DST gives the address the client dialled (IPv4 and IPv6)`, async () => {
      const port = 20000 + Math.floor(Math.random() * 20000)
      const h = await helper()
      await h.apply(method, spec(`od${method}`, port))
      const script = path.join(work, `odst-${method}.js`)
      fs.writeFileSync(script, `
        const net = require('net')
        const { getOriginalDst } = require(${JSON.stringify(path.join(platformDir, 'os/original-dst.js'))})
        const results = {}
        let pending = 2
        function serve(host) {
          const s = net.createServer((sock) => {
            try { results[host] = getOriginalDst(sock) } catch (e) { results[host] = { error: e.code + ' ' + e.message } }
            sock.destroy(); s.close()
            if (--pending === 0) { console.log(JSON.stringify(results)); process.exit(0) }
          })
          return new Promise((r) => s.listen(${port}, host, r))
        }
        Promise.all([serve('127.0.0.1'), serve('::1')]).then(() => {
          net.connect(80, '10.99.0.5').on('error', () => {})
          net.connect(80, 'fd99::5').on('error', () => {})
        })
        setTimeout(() => { console.log(JSON.stringify(results)); process.exit(1) }, 5000)
      `)
      const out = ns.sh('env', `NODE_PATH=${path.resolve(__dirname, '../../../node_modules')}`, process.execPath, script)
      expect(JSON.parse(out)).toEqual({
        '127.0.0.1': { host: '10.99.0.5', port: 80, family: 4 },
        '::1': { host: 'fd99::5', port: 80, family: 6 },
      })
      await h.close()
      expect(ns.rules()).not.toContain('subnet-tunnel-')
    })
  }
})
