import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createTtyPrompter, scriptedPrompter } from '../../../src/ssh/builtin/tty-prompter'
import { isTunnelError } from '../../../src/errors'

describe('createTtyPrompter without a terminal', () => {
  it('is not interactive with SUBNET_TUNNEL_NO_TTY=1 and rejects ask() at once', async () => {
    const p = createTtyPrompter({ env: { SUBNET_TUNNEL_NO_TTY: '1' } })
    expect(p.isInteractive()).toBe(false)
    const err = await p.ask('Password: ', { echo: false }).catch((e) => e)
    expect(isTunnelError(err, 'SSH_NEED_TTY')).toBe(true)
  })

  it('is not interactive when the tty cannot be opened', () => {
    expect(createTtyPrompter({ env: {}, ttyPath: '/nonexistent/tty' }).isInteractive()).toBe(false)
  })

  it('writes notices to the given sink', () => {
    const out: string[] = []
    createTtyPrompter({ env: {}, writeNotice: (t) => out.push(t) }).notice('@@@ banner')
    expect(out).toEqual(['@@@ banner'])
  })
})

describe('scriptedPrompter', () => {
  it('answers in order, records questions, and fails when answers run out', async () => {
    const p = scriptedPrompter(['a', 'b'])
    expect(await p.ask('q1', { echo: true })).toBe('a')
    expect(await p.ask('q2', { echo: false })).toBe('b')
    await expect(p.ask('q3', { echo: true })).rejects.toThrow(/no answer left/)
    expect(p.questions.map((q) => [q.question, q.echo])).toEqual([
      ['q1', true],
      ['q2', false],
      ['q3', true],
    ])
  })
})

// A real pseudo-terminal through util-linux `script`: the child's /dev/tty is the pty, our pipe
// is the keyboard. Proves echo stays on for questions and is off for secrets, and that the
// prompter reads /dev/tty rather than stdin.
const haveScript = spawnSync('script', ['--version']).status === 0

describe.skipIf(!haveScript)('createTtyPrompter on a real pty', () => {
  let dir: string
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'st-tty-'))
    // esbuild comes with vitest (through vite); bundling lets a plain node child run our TS.
    const esbuild = await import('esbuild')
    esbuild.buildSync({
      entryPoints: [resolve(__dirname, '../../../src/ssh/builtin/tty-prompter.ts')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      outfile: join(dir, 'prompter.js'),
      logLevel: 'silent',
    })
    writeFileSync(
      join(dir, 'child.js'),
      `const { createTtyPrompter } = require('./prompter.js')
const p = createTtyPrompter({ env: {} })
;(async () => {
  process.stdout.write('interactive=' + p.isInteractive() + '\\n')
  const name = await p.ask('Name? ', { echo: true })
  const secret = await p.ask('Secret? ', { echo: false })
  process.stdout.write('RESULT ' + JSON.stringify({ name, secret }) + '\\n')
})().catch((e) => { process.stdout.write('ERROR ' + e.message + '\\n'); process.exit(1) })
`,
    )
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('asks on /dev/tty with echo, then reads a secret without echo', async () => {
    const child = spawn('script', ['-qfec', `${process.execPath} child.js`, '/dev/null'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    const waitFor = (s: string) =>
      new Promise<void>((ok, fail) => {
        const t = setTimeout(() => fail(new Error(`timeout waiting for ${s}; got ${JSON.stringify(out)}`)), 10_000)
        const check = () => {
          if (out.includes(s)) {
            clearTimeout(t)
            child.stdout.off('data', check)
            ok()
          }
        }
        child.stdout.on('data', check)
        check()
      })
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    try {
      await waitFor('Name? ')
      child.stdin.write('alice\r')
      await waitFor('Secret? ')
      child.stdin.write('s3cr\x7fcret\r')
      await waitFor('RESULT')
      const before = out.slice(0, out.indexOf('RESULT'))
      expect(out).toContain('interactive=true')
      expect(before).toContain('alice') // echoed by the terminal
      expect(before).not.toContain('s3cr') // not echoed
      await waitFor('}')
      const result = JSON.parse(out.slice(out.indexOf('RESULT') + 7).split('\n')[0]!.trim())
      expect(result).toEqual({ name: 'alice', secret: 's3ccret' })
    } finally {
      child.stdin.end()
      if (child.exitCode === null) child.kill()
    }
  })
})
