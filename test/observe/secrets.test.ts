// Secrets never reach a log line, an error, the audit log, the up line or the status document.
//
// The proxies are driven with real clients at debug level, with right and wrong credentials,
// credentials in URLs and in malformed requests; then every output the process has is searched
// for the password (and its Base64 form, as it travels in Proxy-Authorization).
import { promises as fs } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import fc from 'fast-check'
import { SocksClient } from 'socks'
import { afterEach, describe, expect, it } from 'vitest'
import { parseArgs, redactOptionValues } from '../../src/cli/args'
import { startFrontEnds } from '../../src/tunnel/front-ends'
import { formatError } from '../../src/cli/report-error'
import { buildSnapshot } from '../../src/tunnel/status-snapshot'
import type { TunnelPlan } from '../../src/tunnel/plan'
import { TunnelRuntime } from '../../src/tunnel/runtime'
import { parseProxyAuth } from '../../src/config/bind-address'
import { parseListen } from '../../src/config/listen'
import { TunnelError, toTunnelError } from '../../src/errors'
import { AuditLog } from '../../src/status/audit-log'
import { memoryLogger } from '../../src/observe/logger'
import { AccessPolicy } from '../../src/router/access'
import { parseRequestHead, parseTarget, redactUserinfo } from '../../src/router/http-proxy-wire'
import { DialError } from '../../src/router/dial-error'
import { hostCfg } from '../ssh/helpers'
import { collect, connect, listen, run } from '../router/proxy-test-helpers'
import { FakeDialer } from '../fakes/fake-dialer'

const USER = 'alice'
const PASS = 'Pw7f3qZ-SECRET'
/** A near miss a client might send: just as secret as the right one. */
const WRONG = 'Wx9kq2-ALMOST'
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')

/** Every form in which a secret could show up in text we produce. */
function forms(secret: string): string[] {
  return [secret, b64(`${USER}:${secret}`), encodeURIComponent(secret)]
}

function expectNoSecret(what: string, text: string): void {
  for (const secret of [PASS, WRONG]) {
    for (const f of forms(secret)) expect(text.includes(f), `${what} contains ${JSON.stringify(f)}:\n${text}`).toBe(false)
  }
}

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function origin(): Promise<number> {
  // /slow answers late, so a client process is still alive when the audit log looks it up.
  const srv = http.createServer((req, res) => void setTimeout(() => res.end(`origin ${req.url}`), req.url === '/slow' ? 300 : 0))
  const port = await listen(srv)
  cleanups.push(() => {
    srv.closeAllConnections()
    return new Promise((r) => srv.close(r))
  })
  return port
}

/** Sends raw bytes to the proxy and returns everything it answers. */
async function raw(port: number, text: string): Promise<string> {
  const s = await connect(port)
  const done = collect(s)
  s.end(text)
  return (await done).data.toString('latin1')
}

function planWithProxies(proxyAuth: string): TunnelPlan {
  return {
    remotes: [{ name: 'bastion', request: { destination: 'bastion', identities: [], options: [] }, target: hostCfg({ port: 22, alias: 'bastion', hostName: '127.0.0.1' }), hops: [] }],
    defaultRemote: 'bastion',
    sshEngine: { name: 'builtin', why: 'test' },
    includes: [],
    userExcludes: [],
    capture: false,
    listen: parseListen(undefined),
    socks: [{ host: '127.0.0.1', port: 0 }],
    http: [{ host: '127.0.0.1', port: 0 }],
    proxyAuth: parseProxyAuth(proxyAuth),
    access: new AccessPolicy(),
    method: 'auto',
    connections: 1,
    connectionsMax: 1,
    gateway: false,
    localForwards: [],
    remoteForwards: [],
  }
}

describe('proxy credentials never reach logs, the audit log, the up line or status', () => {
  it('SOCKS5 and HTTP proxy at debug level, right and wrong credentials, userinfo in URLs', async () => {
    const web = await origin()
    const dialer = new FakeDialer()
      .set('web.corp', web)
      .set('refused.corp', new DialError('refused', 'ssh: open refused.corp:80: connection refused'))
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'st-secrets-'))
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }))
    const log = memoryLogger('debug')
    const plan = planWithProxies(`${USER}:${PASS}`)
    const rt = new TunnelRuntime(plan, log)
    const auditFile = path.join(dir, 'audit.jsonl')
    const audit = await AuditLog.open(auditFile, { log })
    rt.tracker.observe(audit)
    rt.frontEnds = await startFrontEnds(plan, { dialer, sessions: new Map(), tracker: rt.tracker, log })
    cleanups.push(async () => {
      for (const f of rt.frontEnds) await f.stop()
    })
    const socksPort = Number(rt.frontEnds.find((f) => f.kind === 'socks5')!.address.split(':').pop())
    const httpPort = Number(rt.frontEnds.find((f) => f.kind === 'http')!.address.split(':').pop())
    const auth = (pw: string): string => `Proxy-Authorization: Basic ${b64(`${USER}:${pw}`)}\r\n`

    // HTTP: right credentials, plain request whose URL also carries userinfo.
    const ok = await raw(httpPort, `GET http://${USER}:${PASS}@web.corp/a HTTP/1.1\r\nHost: web.corp\r\n${auth(PASS)}Connection: close\r\n\r\n`)
    expect(ok).toMatch(/^HTTP\/1\.1 200/)
    expect(ok).toContain('origin /a')
    // A real client process with the credentials on its command line: the audit log names the
    // process behind each connection by its command line, which must come out redacted.
    const viaCurl = await run('curl', ['-sS', '-x', `http://${USER}:${PASS}@127.0.0.1:${httpPort}`, '--proxy-user', `${USER}:${PASS}`, 'http://web.corp/slow'])
    expect(viaCurl.stdout).toBe('origin /slow')
    // Wrong password → 407 and a warning naming the user only.
    expect(await raw(httpPort, `GET http://web.corp/ HTTP/1.1\r\n${auth(WRONG)}\r\n`)).toMatch(/^HTTP\/1\.1 407/)
    // Password without the user part (no colon): not even parsed as credentials.
    expect(await raw(httpPort, `GET http://web.corp/ HTTP/1.1\r\nProxy-Authorization: Basic ${b64(PASS)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 407/)
    // Malformed request line carrying userinfo, and a malformed Proxy-Authorization line → 400.
    expect(await raw(httpPort, `GET http://${USER}:${PASS}@web corp/ HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(httpPort, `GET http://web.corp/ HTTP/1.1\r\nProxy-Authorization : Basic ${b64(`${USER}:${PASS}`)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(httpPort, `GET http://web.corp/ HTTP/1.1\r\nProxy-Authorization Basic ${b64(`${USER}:${PASS}`)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 400/)
    // CONNECT with credentials to a target that refuses → 502, logged as a warning.
    expect(await raw(httpPort, `CONNECT refused.corp:80 HTTP/1.1\r\n${auth(PASS)}\r\n`)).toMatch(/^HTTP\/1\.1 502/)

    // SOCKS5: wrong then right credentials; a connection stays open for the status snapshot.
    const socks = (password: string) =>
      SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: socksPort, type: 5, userId: USER, password },
        command: 'connect',
        destination: { host: 'web.corp', port: 80 },
        timeout: 5_000,
      })
    await expect(socks(WRONG)).rejects.toThrow()
    const held = (await socks(PASS)).socket
    cleanups.push(() => held.destroy())
    const heldCONNECT = await connect(httpPort)
    cleanups.push(() => heldCONNECT.destroy())
    heldCONNECT.write(`CONNECT web.corp:80 HTTP/1.1\r\n${auth(PASS)}\r\n`)
    await new Promise<void>((r) => heldCONNECT.once('data', () => r()))

    const snapshot = JSON.stringify(buildSnapshot(rt, 'test'))
    const upLine = rt.upLine()
    held.destroy()
    heldCONNECT.destroy()
    await new Promise((r) => setTimeout(r, 50))
    for (const f of rt.frontEnds) await f.stop()
    await audit.close()
    const auditText = await fs.readFile(auditFile, 'utf8')
    const logText = log.lines.join('\n')

    // The outputs are real (so the search below means something) …
    expect(logText).toMatch(/proxy authentication failed for user "alice"/)
    expect(logText).toMatch(/socks5: .*authentication failed for user "alice"/)
    expect(logText).toMatch(/malformed request line/)
    expect(logText).toMatch(/malformed header line "Proxy-Authorization…"/)
    expect(logText).toMatch(/refused\.corp:80: ssh: open refused\.corp:80: connection refused/)
    expect(auditText.trim().split('\n').length).toBeGreaterThanOrEqual(4)
    expect(auditText).toContain('"dst":"web.corp:80"')
    expect(auditText).toMatch(/"command":"curl -sS -x http:\/\/…@127\.0\.0\.1:\d+ --proxy-user … http:\/\/web\.corp\/slow"/)
    expect(snapshot).toContain('"active":2')
    expect(upLine).toMatch(/socks5 127\.0\.0\.1:\d+, http proxy 127\.0\.0\.1:\d+/)
    // … and none of them holds a secret.
    expectNoSecret('log', logText)
    expectNoSecret('audit log', auditText)
    expectNoSecret('status snapshot', snapshot)
    expectNoSecret('up line', upLine)
    expect((await fs.stat(auditFile)).mode & 0o777).toBe(0o600)
  })
})

describe('malformed --proxy-auth and command lines: errors name the option, never its value', () => {
  it.each([`:${PASS}`, PASS, `${USER}:`, ''])('parseProxyAuth(%j) fails without echoing it', (value) => {
    let err: unknown
    try {
      parseProxyAuth(value)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TunnelError)
    const e = err as TunnelError
    expect(e.code).toBe('USAGE')
    expect(e.message).toContain('--proxy-auth')
    expectNoSecret('error', formatError(e, 3))
    // The hint points to the environment variable, which `ps` does not show.
    expect(e.hint).toMatch(/SUBNET_TUNNEL_PROXY_AUTH/)
  })

  it.each([
    [[`--proxyauth=${USER}:${PASS}`], /unknown option '--proxyauth=…'/],
    [['-r', 'b', `--proxy-authx=${USER}:${PASS}`, '-D', '1080'], /unknown option '--proxy-authx=…'/],
    [['-r', 'b', '--proxy-auth', `${USER}:${PASS}`, '--bogus'], /unknown option '--bogus'/],
    [['-r', 'b', `--http-proxy=${USER}:${PASS}`, `--proxy-auth`], /argument missing/],
  ])('parseArgs(%j) → USAGE without the secret', (argv, want) => {
    let err: unknown
    try {
      parseArgs(argv as string[], '0.0.0', { stdout: () => {}, stderr: () => {} })
    } catch (e) {
      err = e
    }
    const e = toTunnelError(err)
    expect(e.code).toBe('USAGE')
    expect(e.message).toMatch(want)
    expectNoSecret('usage error', formatError(e, 3))
  })

  it('redactOptionValues keeps the option name and drops only an =value', () => {
    expect(redactOptionValues(`unknown option '--x=a:b'`)).toBe(`unknown option '--x=…'`)
    expect(redactOptionValues(`unknown option '--bogus'`)).toBe(`unknown option '--bogus'`)
    expect(redactOptionValues(`option '--proxy-auth <user:pass>' argument missing`)).toBe(`option '--proxy-auth <user:pass>' argument missing`)
  })

  it('--help recommends the environment variable over --proxy-auth on the command line', () => {
    let help = ''
    parseArgs(['--help'], '0.0.0', { stdout: (s) => void (help += s), stderr: () => {} })
    expect(help).toMatch(/--proxy-auth <user:pass>[\s\S]*prefer\s+\$SUBNET_TUNNEL_PROXY_AUTH/)
  })
})

describe('HTTP wire: parse failures quote no credentials', () => {
  const secret = fc.stringMatching(/^[A-Za-z0-9_-]{8,24}$/)
  it('property: a malformed request line or header line never quotes the password', () => {
    fc.assert(
      fc.property(secret, fc.constantFrom(' ', '\t', ''), fc.boolean(), (pw, sep, inUrl) => {
        const token = b64(`${USER}:${pw}`)
        const head = inUrl
          ? `GET http://${USER}:${pw}@bad host/ HTTP/1.1\r\n\r\n` // a space in the target: malformed
          : `GET http://h/ HTTP/1.1\r\nProxy-Authorization${sep} Basic ${token}\r\n\r\n` // no colon or space before it
        const r = parseRequestHead(Buffer.from(head, 'latin1'))
        expect(r.status).toBe('bad')
        const reason = r.status === 'bad' ? r.reason : ''
        expect(reason.includes(pw) || reason.includes(token)).toBe(false)
      }),
    )
  })

  it('parseTarget errors (sent to the client) hide userinfo too', () => {
    const t = parseTarget('GET', `http://${USER}:${PASS}@bad^host/`)
    expect('error' in t && t.error).toMatch(/bad host in URL "http:\/\/…@bad\^host\/"/)
    expect(redactUserinfo(`http://${USER}:p@ss@h/`)).toBe('http://…@…@h/')
  })
})
