import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { memoryLogger } from '../../../src/observe/logger'
import { startHelper } from '../../../src/platform/helper/helper-client'

/** A stand-in helper (plain node) that speaks the protocol: echoes requests back as results. */
const ECHO_HELPER = `
  process.stdout.write(JSON.stringify({ log: { level: 'info', msg: 'hello from helper' } }) + '\\n')
  process.stdout.write(JSON.stringify({ ready: { pid: process.pid, netns: 1, cleanup: { removed: ['x'], kept: 0, warnings: [] } } }) + '\\n')
  let buf = ''
  process.stdin.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\\n')) >= 0) {
      const req = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1)
      if (req.op === 'revert') process.stdout.write(JSON.stringify({ id: req.id, ok: false, error: { code: 'FW_APPLY', message: 'nope', hint: 'h' } }) + '\\n')
      else if (req.op === 'cleanup') process.exit(3)
      else process.stdout.write(JSON.stringify({ id: req.id, ok: true, result: req }) + '\\n')
    }
  })
  process.stdin.on('end', () => process.exit(0))
`
const launch = (args: string[], viaSudo = false) => ({ command: process.execPath, args, viaSudo, interactive: false })

describe('startHelper / HelperClient', () => {
  it('waits for ready, forwards logs, matches responses by id, maps errors, closes cleanly', async () => {
    const log = memoryLogger()
    const h = await startHelper({ log, launch: launch(['-e', ECHO_HELPER]) })
    expect(h.startupCleanup).toEqual({ removed: ['x'], kept: 0, warnings: [] })
    expect(log.lines).toContain('[fw] hello from helper')
    const spec = { instanceId: 'ab', listenPort: 9, include: [parseCidr('10.1.2.3/16')], exclude: [] }
    const [a, b] = await Promise.all([h.probe('nft', { ipv6: true }), h.apply('nat', spec)])
    expect(a).toEqual({ id: 1, op: 'probe', method: 'nft', ipv6: true })
    expect(b).toEqual({ id: 2, op: 'apply', method: 'nat', spec: { instanceId: 'ab', listenPort: 9, include: ['10.1.0.0/16'], exclude: [] } })
    await expect(h.revert()).rejects.toMatchObject({ code: 'FW_APPLY', message: 'nope', hint: 'h' })
    let unexpected = false
    h.onExit(() => (unexpected = true))
    expect(await h.close()).toMatchObject({ code: 0, expected: true })
    expect(unexpected).toBe(false)
  })

  it('starts the helper with an allow-listed environment: no credentials, no NODE_OPTIONS', async () => {
    const saved = { ...process.env }
    Object.assign(process.env, { SUBNET_TUNNEL_PROXY_AUTH: 'alice:s3cret', AWS_SECRET_ACCESS_KEY: 'k', NODE_OPTIONS: '--require /tmp/x.js', LC_MESSAGES: 'C', SUDO_UID: '1000' })
    try {
      const showEnv = `
        process.stdout.write(JSON.stringify({ log: { level: 'info', msg: 'ENV ' + Object.keys(process.env).sort().join(',') } }) + '\\n')
        process.stdout.write(JSON.stringify({ ready: { pid: process.pid, netns: 1, cleanup: null } }) + '\\n')
        process.stdin.on('end', () => process.exit(0)); process.stdin.resume()
      `
      const log = memoryLogger()
      const h = await startHelper({ log, launch: launch(['-e', showEnv]) })
      await h.close()
      const keys = log.lines.map((l) => /\] ENV ([\w,]+)$/.exec(l)?.[1]).find(Boolean)!.split(',')
      expect(keys).toEqual(expect.arrayContaining(['PATH', 'LC_MESSAGES', 'SUDO_UID']))
      for (const k of keys) expect(k).toMatch(/^(PATH|LANG|LANGUAGE|LC_\w+|TERM|TZ|SUDO_(UID|GID|USER)|SUBNET_TUNNEL_STATE_DIR)$/)
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
      Object.assign(process.env, saved)
    }
  })

  it('an unexpected exit rejects pending requests with HELPER and fires onExit once', async () => {
    const h = await startHelper({ log: memoryLogger(), launch: launch(['-e', ECHO_HELPER]) })
    const seen: unknown[] = []
    h.onExit((e) => seen.push(e))
    await expect(h.cleanup()).rejects.toMatchObject({ code: 'HELPER' })
    expect(seen).toEqual([expect.objectContaining({ code: 3, expected: false, reason: 'code 3' })])
    await expect(h.probe('nft')).rejects.toMatchObject({ code: 'HELPER', message: /not running/ })
  })

  it('a helper that stopped on its own after reverting everything: revert() resolves, the exit says clean', async () => {
    const selfStop = (clean: boolean): string => `
      process.stdout.write(JSON.stringify({ ready: { pid: process.pid, netns: 1, cleanup: null } }) + '\\n')
      process.stdin.once('data', () => {
        process.stdout.write(JSON.stringify({ stopped: { why: 'SIGTERM', clean: ${clean} } }) + '\\n')
        process.exit(0)
      })
    `
    for (const clean of [true, false]) {
      const log = memoryLogger()
      const h = await startHelper({ log, launch: launch(['-e', selfStop(clean)]) })
      const exited = new Promise((resolve) => h.onExit(resolve))
      const first = h.probe('nft') // makes the stand-in stop
      await expect(first).rejects.toMatchObject({ code: 'HELPER' })
      expect(await exited).toMatchObject({ code: 0, expected: false, clean })
      if (clean) {
        expect(await h.revert()).toEqual({ reverted: true })
        expect(log.lines.join('\n')).toMatch(/already removed by the helper \(it stopped: SIGTERM\)/)
      } else {
        await expect(h.revert()).rejects.toMatchObject({ code: 'HELPER' })
      }
    }
  })

  it('through sudo: failure before ready → NEED_ROOT with a NOPASSWD hint; missing sudo too', async () => {
    const viaSudoFail = launch(['-e', 'process.stderr.write("sudo: a password is required\\n"); process.exit(1)'], true)
    const safe = () => ({ safe: true }) as const
    await expect(startHelper({ log: memoryLogger(), launch: viaSudoFail, installSafety: safe })).rejects.toMatchObject({
      code: 'NEED_ROOT',
      message: 'not root and sudo is not available without a password',
      hint: expect.stringMatching(/run with sudo, or add a NOPASSWD rule .*: \S+ ALL=\(root\) NOPASSWD: \S+ \S+helper-main\.js$/),
    })
    // tun: the rule with the grant, said to be a different one
    await expect(startHelper({ log: memoryLogger(), launch: viaSudoFail, installSafety: safe, allowTun: true })).rejects.toMatchObject({
      code: 'NEED_ROOT',
      hint: expect.stringMatching(/the ordinary rule does not grant --method tun .*NOPASSWD: \S+ \S+helper-main\.js --allow-tun$/),
    })
    // an install a user can change: no rule, the reason and what to do instead
    const unsafe = () => ({ safe: false, path: '/home/alice', reason: 'is owned by uid 1000, not root' }) as const
    const err = await startHelper({ log: memoryLogger(), launch: viaSudoFail, installSafety: unsafe }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'NEED_ROOT', hint: expect.stringMatching(/unsafe here: \/home\/alice is owned by uid 1000, not root.*npm pack/) })
    expect((err as { hint: string }).hint).not.toMatch(/NOPASSWD:/)
    const noSudo = { command: '/nonexistent/sudo', args: [], viaSudo: true, interactive: false }
    await expect(startHelper({ log: memoryLogger(), launch: noSudo })).rejects.toMatchObject({ code: 'NEED_ROOT', message: /sudo is not installed/ })
  })

  it('as root: a helper that dies or never gets ready → HELPER', async () => {
    await expect(startHelper({ log: memoryLogger(), launch: launch(['-e', 'console.error("boom"); process.exit(2)']) }))
      .rejects.toMatchObject({ code: 'HELPER', message: /did not start.*boom/ })
    await expect(startHelper({ log: memoryLogger(), readyTimeoutMs: 300, launch: launch(['-e', 'setTimeout(() => {}, 5000)']) }))
      .rejects.toMatchObject({ code: 'HELPER', message: /not ready after 300 ms/ })
  })
})
