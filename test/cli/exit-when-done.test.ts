import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

// Real processes against dist/ (needs `npm run build`), like bin.test.ts.
const root = path.resolve(__dirname, '..', '..')
const bin = path.join(root, JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).bin['subnet-tunnel'])
const exitWhenDoneJs = path.join(root, 'dist', 'cli', 'exit-when-done.js')

// A preload that leaves one TCP handle Node 20 can never close: a socket reset while its
// shutdown is pending (end() then resetAndDestroy() — the mistake router/socket-reset.ts
// prevents). Once the loop runs dry, Node's exit-time cleanup waits for that handle's close
// callback forever: 100 % CPU, no exit.
const dir = mkdtempSync(path.join(tmpdir(), 'st-exit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const leak = path.join(dir, 'leak.js')
writeFileSync(
  leak,
  `const net = require('node:net')
const server = net.createServer((s) => {
  server.close()
  s.on('error', (e) => process.stderr.write('LEAKED ' + e.code + '\\n'))
  s.end('bye')
  s.resetAndDestroy()
})
server.listen(0, '127.0.0.1', () => net.connect(server.address().port, '127.0.0.1').resume())
`,
)

/** Runs node with argv; resolves with its exit, or 'still running' (then kills it) after ms. */
function runFor(argv: string[], ms: number): Promise<{ code: number | null | 'still running'; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      resolve({ code: 'still running', stdout, stderr })
    }, ms)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('exitWhenDone (needs `npm run build`)', () => {
  it('control: with that handle, a process whose loop runs dry never exits by itself', async () => {
    // If this starts failing, Node fixed TCPWrap::Reset: the preload no longer builds the trap.
    const r = await runFor(['--require', leak, '-e', ''], 1500)
    expect(r.stderr).toContain('LEAKED EINVAL')
    expect(r.code).toBe('still running')
  })

  it('leaves with the given code as soon as the loop runs dry, despite that handle', async () => {
    // The fallback timer is far away: only the 'beforeExit' path can end the process in time.
    const t0 = Date.now()
    const r = await runFor(['--require', leak, '-e', `require(${JSON.stringify(exitWhenDoneJs)}).exitWhenDone(3, 60000)`], 5000)
    expect(r.stderr).toContain('LEAKED EINVAL')
    expect(r.code).toBe(3)
    expect(Date.now() - t0).toBeLessThan(5000)
  })

  it('is how the CLI leaves: the launcher exits despite that handle', async () => {
    const r = await runFor(['--require', leak, bin, '--version'], 5000)
    expect(r.stderr).toContain('LEAKED EINVAL')
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toMatch(/^subnet-tunnel \d+\.\d+\.\d+/)
  })
})
