import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import {
  engineLaunch, findEngine, kindOf, parseVersion, probeVersion, START_FAILURES, startExternalEngine, versionArgs,
  type ExternalEngine,
} from '../../src/tun/external-engine'
import type { TunnelError } from '../../src/errors'

const socks = { host: '127.0.0.1', port: 41080, username: 'u0123456789abcde', password: 'p0123456789abcdef0123456789abcde' }

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-engine-'))
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

/** An executable shell script in dir. */
function script(name: string, body: string): string {
  const p = path.join(dir, name)
  fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return p
}

const waitFor = async (fn: () => boolean, ms = 5000): Promise<boolean> => {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

describe('finding an engine', () => {
  it('a known name is searched on PATH; a path is taken as is; the dialect follows the file name', () => {
    const t2s = script('tun2socks', 'exit 0')
    const hev = script('hev-socks5-tunnel', 'exit 0')
    expect(findEngine('tun2socks', `/nonexistent:${dir}`)).toEqual({ kind: 'tun2socks', path: t2s })
    expect(findEngine('hev-socks5-tunnel', dir)).toEqual({ kind: 'hev-socks5-tunnel', path: hev })
    expect(findEngine(hev, '')).toEqual({ kind: 'hev-socks5-tunnel', path: hev })
    expect(kindOf('/opt/bin/tun2socks-linux-amd64')).toBe('tun2socks')
    expect(kindOf('/usr/local/bin/sing-box')).toBe('sing-box')
    expect(kindOf('/x/my-engine')).toBe('tun2socks')
  })

  it('missing, unknown or not executable: USAGE with a hint', () => {
    expect(() => findEngine('sing-box', dir)).toThrow(/not found on PATH/)
    expect(() => findEngine('wireguard', dir)).toThrow(/unknown engine/)
    const plain = path.join(dir, 'plain')
    fs.writeFileSync(plain, 'x', { mode: 0o644 })
    expect(() => findEngine(plain)).toThrow(/not an executable/)
    try {
      findEngine('tun2socks', dir)
    } catch (e) {
      expect(e).toMatchObject({ code: 'USAGE', hint: expect.stringMatching(/--tun-engine builtin/) })
    }
  })
})

describe('engine arguments and configs', () => {
  const o = { device: 'st1a2b3c4d', socks, mtu: 1500, configDir: '/run/x' }

  it('tun2socks: -device tun://NAME -proxy socks5://USER:PASS@HOST:PORT, never -mtu (it would need CAP_NET_ADMIN)', () => {
    expect(engineLaunch('tun2socks', o)).toEqual({
      args: ['-device', 'tun://st1a2b3c4d', '-proxy', `socks5://${socks.username}:${socks.password}@127.0.0.1:41080`, '-loglevel', 'warn'],
    })
    expect(engineLaunch('tun2socks', { ...o, verbose: true }).args.slice(-1)).toEqual(['info'])
    expect(engineLaunch('tun2socks', { ...o, socks: { ...socks, host: '::1' } }).args[3]).toMatch(/@\[::1\]:41080$/)
  })

  it('hev-socks5-tunnel: a YAML file with the tunnel name and the proxy, no addresses of its own', () => {
    const l = engineLaunch('hev-socks5-tunnel', o)
    expect(l.args).toEqual(['/run/x/hev-socks5-tunnel.yml'])
    expect(l.config?.file).toBe('/run/x/hev-socks5-tunnel.yml')
    expect(l.config?.text).toContain('tunnel:\n  name: st1a2b3c4d\n  mtu: 1500\n')
    expect(l.config?.text).toContain("socks5:\n  port: 41080\n  address: '127.0.0.1'\n")
    expect(l.config?.text).toContain(`password: '${socks.password}'`)
    expect(l.config?.text).not.toMatch(/ipv4:|ipv6:/)
  })

  it('sing-box: run -c JSON with a tun inbound on our interface, auto_route off, a socks outbound', () => {
    const l = engineLaunch('sing-box', o)
    expect(l.args).toEqual(['run', '-c', '/run/x/sing-box.json'])
    const cfg = JSON.parse(l.config!.text) as { inbounds: Array<Record<string, unknown>>; outbounds: Array<Record<string, unknown>> }
    expect(cfg.inbounds[0]).toMatchObject({ type: 'tun', interface_name: 'st1a2b3c4d', auto_route: false })
    expect(cfg.outbounds[0]).toMatchObject({ type: 'socks', server: '127.0.0.1', server_port: 41080, username: socks.username })
  })

  it('refuses values that could break out of the config syntax', () => {
    expect(() => engineLaunch('hev-socks5-tunnel', { ...o, socks: { ...socks, password: "x'\nmisc:" } })).toThrow(/not plain/)
    expect(() => engineLaunch('tun2socks', { ...o, device: 'st1 -x' })).toThrow(/not plain/)
  })

  it('versions: the flag per dialect, and the number in what they print', () => {
    expect(versionArgs('tun2socks')).toEqual(['-version'])
    expect(versionArgs('sing-box')).toEqual(['version'])
    expect(versionArgs('hev-socks5-tunnel')).toEqual([])
    expect(parseVersion('tun2socks-2.5.2\nlinux/amd64, go1.21.3, 9b8d7e6')).toBe('2.5.2')
    expect(parseVersion('sing-box version 1.10.1\n\nEnvironment: go1.23.1 linux/amd64')).toBe('1.10.1')
    expect(parseVersion('/usr/bin/hev-socks5-tunnel CONFIG_PATH\nVersion: 2.7.5 a1b2c3d\n')).toBe('2.7.5')
    expect(parseVersion('usage: whatever')).toBeUndefined()
  })

  it('probeVersion runs the program with the version flag', async () => {
    const p = script('tun2socks', 'if [ "$1" = "-version" ]; then echo tun2socks-2.5.2; fi')
    expect(await probeVersion({ kind: 'tun2socks', path: p })).toBe('2.5.2')
    expect(await probeVersion({ kind: 'tun2socks', path: path.join(dir, 'missing') })).toBeUndefined()
  })
})

describe('supervision', () => {
  let engine: ExternalEngine | undefined
  afterEach(async () => {
    await engine?.stop()
    engine = undefined
  })

  it('runs the engine with our arguments, restarts it after a crash, and stop() ends it', async () => {
    const log = path.join(dir, 'runs.log')
    // Each run records its pid and argv; the first one crashes after 200 ms.
    const p = script('tun2socks', `[ "$1" = "-version" ] && { echo tun2socks-2.5.2; exit 0; }
echo "$$ $*" >> ${log}
if [ ! -e ${log}.crashed ]; then sleep 0.2; touch ${log}.crashed; echo "boom" >&2; exit 3; fi
exec sleep 60`)
    const logger = memoryLogger()
    engine = await startExternalEngine({
      program: { kind: 'tun2socks', path: p }, device: 'st1a2b3c4d', mtu: 1500, socks, log: logger,
      backoff: { firstMs: 50, maxMs: 100 }, wrap: [],
    })
    expect(engine.version).toBe('2.5.2')
    expect(await waitFor(() => engine!.restarts() === 1 && fs.readFileSync(log, 'utf8').trim().split('\n').length === 2)).toBe(true)
    const runs = fs.readFileSync(log, 'utf8').trim().split('\n')
    expect(runs[1]).toMatch(new RegExp(`^\\d+ -device tun://st1a2b3c4d -proxy socks5://${socks.username}:${socks.password}@127\\.0\\.0\\.1:41080 -loglevel`))
    expect(logger.lines.join('\n')).toMatch(/tun2socks exited \(code 3\); restarting in 50 ms/)
    // the secret never reaches the log
    expect(logger.lines.join('\n')).not.toContain(socks.password)
    const pid = engine.pid()!
    expect(() => process.kill(pid, 0)).not.toThrow()
    await engine.stop()
    expect(() => process.kill(pid, 0)).toThrow()
    expect(engine.pid()).toBeUndefined()
  })

  it('an engine that keeps dying at start is given up with its last words and a hint', async () => {
    const p = script('hev-socks5-tunnel', 'echo "[E] socks5 tunnel mtu" >&2; exit 1')
    let fatal: TunnelError | undefined
    engine = await startExternalEngine({
      program: { kind: 'hev-socks5-tunnel', path: p }, device: 'st1a2b3c4d', mtu: 1500, socks, log: memoryLogger(),
      backoff: { firstMs: 10, maxMs: 20 }, wrap: [], onFatal: (e) => (fatal = e),
    })
    expect(await waitFor(() => fatal !== undefined)).toBe(true)
    expect(fatal).toMatchObject({ code: 'FW_UNSUPPORTED', message: expect.stringMatching(new RegExp(`exited at start ${START_FAILURES} times.*socks5 tunnel mtu`)) })
    expect(fatal?.hint).toMatch(/CAP_NET_ADMIN/)
    expect(engine.restarts()).toBe(START_FAILURES - 1)
  })

  it('the config file is private and removed on stop', async () => {
    const p = script('hev-socks5-tunnel', `[ -z "$1" ] && { echo "Version: 2.7.5"; exit 255; }
cp "$1" ${dir}/seen.yml; stat -c %a "$1" > ${dir}/mode; echo "$1" > ${dir}/path; exec sleep 60`)
    engine = await startExternalEngine({ program: { kind: 'hev-socks5-tunnel', path: p }, device: 'st1a2b3c4d', mtu: 1500, socks, log: memoryLogger(), wrap: [] })
    expect(engine.version).toBe('2.7.5')
    expect(await waitFor(() => fs.existsSync(path.join(dir, 'path')) && fs.readFileSync(path.join(dir, 'path'), 'utf8').includes('\n'))).toBe(true)
    expect(fs.readFileSync(path.join(dir, 'mode'), 'utf8').trim()).toBe('600')
    expect(fs.readFileSync(path.join(dir, 'seen.yml'), 'utf8')).toContain('name: st1a2b3c4d')
    const cfg = fs.readFileSync(path.join(dir, 'path'), 'utf8').trim()
    await engine.stop()
    engine = undefined
    expect(fs.existsSync(cfg)).toBe(false)
  })
})
