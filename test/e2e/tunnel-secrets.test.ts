// Secrets never appear in anything the real CLI produces, at -vvv: a key passphrase typed at the
// terminal prompt, proxy credentials given with --proxy-auth and sent by SOCKS5 and HTTP
// clients (right and wrong). Searched: everything on the terminal (stdout and stderr through a
// pty), the audit log, and `status --json`. Also checks the modes of the files that describe
// connections: audit log 0600, control socket 0600 in a 0700 directory, journal 0600 in 0700.
//
// The CLI asks for passphrases on /dev/tty only, so it runs under `script` (util-linux), which
// gives it a pty as controlling terminal; the test types the passphrase into that pty once the
// prompt shows. With echo off (raw mode) the typed passphrase never comes back as output.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { engineUnderTest, assertCliBuilt, cliEnv, descendantsOf, runCli, waitGone } from './lib/cli'
import { CLI_BIN, describeRun } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { newTestbedName, Testbed } from './lib/testbed'
import { curl } from './lib/traffic'

const HELLO = 'hello from the private network'
const PASSPHRASE = 'Kp-83jXq-passphrase-SECRET'
const USER = 'alice'
const PROXY_PASS = 'Px-5tW9z-SECRET'
const WRONG_PASS = 'Px-5tW9y-ALMOST'

function secretForms(): string[] {
  const out: string[] = []
  for (const s of [PASSPHRASE, PROXY_PASS, WRONG_PASS]) {
    out.push(s, Buffer.from(`${USER}:${s}`).toString('base64'), Buffer.from(s).toString('base64'))
  }
  return out
}

function expectNoSecret(what: string, text: string): void {
  for (const f of secretForms()) expect(text.includes(f), `${what} contains ${JSON.stringify(f)}:\n${text.slice(-4000)}`).toBe(false)
}

/** POSIX shell single-quoting, for script -c. */
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

async function waitFor(cond: () => boolean, ms: number, what: string, out: () => string): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far:\n${out()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const mode = (p: string): number => fs.lstatSync(p).mode & 0o777

e2eDescribe('secrets stay out of every output (real CLI at -vvv, real sshd, passphrase typed on a pty)', () => {
  let tb: Testbed
  let work: string
  let xdg: string
  let sshConfig: string
  let child: ChildProcess | undefined

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('sec'))
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'st-e2e-sec-'))
    xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'st-e2e-sec-xdg-'))
    // A passphrase-protected key the bastion accepts (appended to the testbed's authorized_keys).
    const key = path.join(work, 'id_enc')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-C', 'secrets-test', '-f', key])
    fs.appendFileSync(path.join(tb.env.dir, 'authorized_keys'), fs.readFileSync(`${key}.pub`, 'utf8'))
    sshConfig = path.join(work, 'ssh_config')
    fs.writeFileSync(
      sshConfig,
      `Host bastion\n  HostName ${tb.env.bastionIp}\n  User root\n  IdentityFile ${key}\n  IdentitiesOnly yes\n` +
        `  UserKnownHostsFile ${tb.env.knownHosts}\n  GlobalKnownHostsFile /dev/null\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n`,
    )
  })
  afterAll(async () => {
    if (child?.pid !== undefined && child.exitCode === null) {
      const pids = [...descendantsOf(child.pid), child.pid]
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL')
        } catch {
          // gone
        }
      }
      await waitGone(pids)
    }
    if (work) fs.rmSync(work, { recursive: true, force: true })
    if (xdg) fs.rmSync(xdg, { recursive: true, force: true })
    await tb?.down()
  })

  it('passphrase, --proxy-auth and client credentials: not on the terminal, in the audit log or in status --json', async () => {
    const audit = path.join(work, 'audit.jsonl')
    const args = [
      '-F', sshConfig, '-r', 'bastion', tb.env.privateNet,
      '-D', '11095', '--http-proxy', '18095', '--proxy-auth', `${USER}:${PROXY_PASS}`,
      '--audit-log', audit, '-vvv',
    ]
    // `exec`: script runs `$SHELL -c CMD`, and dash (CI has no SHELL, so /bin/sh) stays as the
    // parent in the terminal's process group and dies of the Ctrl-C below, which script reports
    // as exit 130. With exec the CLI is script's child, as a user's shell would run it.
    const cmd = 'exec ' + [process.execPath, CLI_BIN, ...args].map(shq).join(' ')
    const env = cliEnv({ XDG_RUNTIME_DIR: xdg, TERM: 'dumb' })
    delete env.SUBNET_TUNNEL_NO_TTY // the prompt must be possible
    const argv = tb.nsArgv('client', ['script', '-qfec', cmd, '/dev/null'])
    let out = ''
    const c = spawn(argv[0]!, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] })
    child = c
    c.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')))
    c.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')))
    const exited = new Promise<number | null>((r) => c.on('exit', (code) => r(code)))

    await waitFor(() => /Enter passphrase for key '[^']*id_enc'/.test(out), 30_000, 'the passphrase prompt', () => out)
    c.stdin!.write(`${PASSPHRASE}\r`)
    await waitFor(() => /subnet-tunnel up:/.test(out), 60_000, 'the up line', () => out)

    // Traffic through every front-end, with right and wrong credentials.
    expect((await curl(tb, tb.url(tb.env.privateIp))).stdout).toContain(HELLO)
    const socksOk = await curl(tb, tb.url(tb.env.privateIp), { extra: ['--socks5', `127.0.0.1:11095`, '--proxy-user', `${USER}:${PROXY_PASS}`] })
    expect(socksOk.stdout, describeRun(socksOk)).toContain(HELLO)
    const socksBad = await curl(tb, tb.url(tb.env.privateIp), { extra: ['--socks5', `127.0.0.1:11095`, '--proxy-user', `${USER}:${WRONG_PASS}`] })
    expect(socksBad.code).not.toBe(0)
    const httpOk = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-x', `http://${USER}:${PROXY_PASS}@127.0.0.1:18095`] })
    expect(httpOk.stdout, describeRun(httpOk)).toContain(HELLO)
    const connectOk = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-p', '-x', `http://${USER}:${PROXY_PASS}@127.0.0.1:18095`] })
    expect(connectOk.stdout, describeRun(connectOk)).toContain(HELLO)
    const httpBad = await curl(tb, tb.url(tb.env.privateIp), { extra: ['-x', `http://${USER}:${WRONG_PASS}@127.0.0.1:18095`, '-o', '/dev/null', '-w', '%{http_code}'] })
    expect(httpBad.stdout).toBe('407')

    // status --json, through the control socket in our private XDG_RUNTIME_DIR.
    const status = await runCli(tb, ['status', '--json'], { env: { XDG_RUNTIME_DIR: xdg } })
    expect(status.code, describeRun(status)).toBe(0)
    expect(status.stdout).toContain('127.0.0.1:11095')
    const instanceId = /"instanceId":\s*"([a-z0-9]+)"/.exec(status.stdout)?.[1]
    expect(instanceId).toBeDefined()

    // File modes while the tunnel is up.
    const ctlDir = path.join(xdg, 'subnet-tunnel')
    expect(mode(ctlDir).toString(8)).toBe('700')
    const sock = path.join(ctlDir, `${instanceId}.sock`)
    expect(fs.lstatSync(sock).isSocket()).toBe(true)
    expect(mode(sock).toString(8)).toBe('600')
    expect(mode(audit).toString(8)).toBe('600')
    expect(mode('/run/subnet-tunnel').toString(8)).toBe('700')
    expect(mode(`/run/subnet-tunnel/${instanceId}.json`).toString(8)).toBe('600')

    // Ctrl-C on the pty: a clean stop (the audit log is flushed and closed).
    const atCtrlC = out.length
    c.stdin!.write('\x03')
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))])
    expect(code, out.slice(-3000)).toBe(0)
    c.stdin!.end()
    // Ctrl-C reaches the helper too: it must leave the revert to us, so no "may remain" scare.
    const afterCtrlC = out.slice(out.lastIndexOf('stopping (SIGINT)'))
    expect(afterCtrlC).toMatch(/nft: reverted subnet-tunnel-/)
    expect(afterCtrlC).not.toMatch(/teardown:|may remain/)
    // It reaches the openssh engine's master too (it shares the terminal to prompt there): a
    // master that exits first is our own stop, not a lost connection to reconnect.
    expect(out.slice(atCtrlC)).not.toMatch(/connection lost|reconnecting/)

    const auditText = fs.readFileSync(audit, 'utf8')
    // The outputs are real: the prompt (ssh's own on the openssh engine), ssh2's protocol trace
    // on the built-in one, the auth warnings, audit lines.
    expect(out).toMatch(engineUnderTest() === 'builtin' ? /USERAUTH_REQUEST \(publickey\)/ : /Enter passphrase for key/)
    expect(out).toMatch(/authentication failed for user "alice"/)
    expect(out).toMatch(/proxy authentication failed for user "alice"/)
    expect(auditText.trim().split('\n').length).toBeGreaterThanOrEqual(4)
    // None of them holds a secret.
    expectNoSecret('terminal output', out)
    expectNoSecret('audit log', auditText)
    expectNoSecret('status --json', status.stdout + status.stderr)
  })
  it('$SUBNET_TUNNEL_PROXY_AUTH is used, then reaches no child: exec command, ProxyCommand, ssh -G Match exec, helper; -f still has it', async () => {
    const dump = (name: string): string => path.join(work, `${name}.env`)
    const cfg = path.join(work, 'ssh_config_env')
    // Match exec runs inside `ssh -G`; the ProxyCommand when the builtin engine connects.
    fs.writeFileSync(
      cfg,
      `Match exec "env > ${dump('match-exec')}"\n` +
        `Host bastion\n  HostName ${tb.env.bastionIp}\n  User root\n  IdentityFile ${tb.env.sshKey}\n  IdentitiesOnly yes\n` +
        `  UserKnownHostsFile ${tb.env.knownHosts}\n  GlobalKnownHostsFile /dev/null\n` +
        `  ProxyCommand sh -c 'env > ${dump('proxy-command')}; exec socat - TCP:%h:%p'\n`,
    )
    const secretEnv = { SUBNET_TUNNEL_PROXY_AUTH: `${USER}:${PROXY_PASS}` }
    const url = tb.url(tb.env.privateIp)
    // The command dumps its own environment and every sibling's (the root helper among them),
    // then shows the proxy really wants the credentials it was given.
    const script =
      `env > ${dump('exec')}; ` +
      `for p in $(ps -o pid= --ppid $PPID); do tr '\\0' '\\n' < /proc/$p/environ > ${work}/child-$p.env; done; ` +
      `curl -s -o /dev/null -w '%{http_code}' -x http://127.0.0.1:18096 ${url} > ${work}/noauth.code; ` +
      `curl -s -o /dev/null -w '%{http_code}' -x http://${USER}:${PROXY_PASS}@127.0.0.1:18096 ${url} > ${work}/auth.code`
    const r = await runCli(tb, ['-F', cfg, '-r', 'bastion', tb.env.privateNet, '--http-proxy', '18096', 'exec', '--', 'sh', '-c', script], {
      env: secretEnv,
    })
    expect(r.code, describeRun(r)).toBe(0)
    expect(fs.readFileSync(path.join(work, 'noauth.code'), 'utf8')).toBe('407')
    expect(fs.readFileSync(path.join(work, 'auth.code'), 'utf8')).toBe('200')
    const children = fs.readdirSync(work).filter((f) => f.startsWith('child-'))
    expect(children.length, 'the exec command and the helper').toBeGreaterThanOrEqual(2)
    for (const f of ['match-exec.env', 'proxy-command.env', 'exec.env', ...children]) {
      const text = fs.readFileSync(path.join(work, f), 'utf8')
      expect(text, f).toMatch(/PATH=/) // a real dump
      expect(text, f).not.toContain('SUBNET_TUNNEL_PROXY_AUTH')
      expectNoSecret(f, text)
    }

    // -f: the background copy gets the credentials (and takes them out of its environment too).
    const pidfile = path.join(work, 'bg.pid')
    const bg = await runCli(tb, ['-F', cfg, '-r', 'bastion', '-f', '--pidfile', pidfile, '--http-proxy', '18097'], { env: secretEnv })
    expect(bg.code, describeRun(bg)).toBe(0)
    const pid = Number(fs.readFileSync(pidfile, 'utf8'))
    try {
      const code = async (proxy: string): Promise<string> =>
        (await curl(tb, url, { extra: ['-x', proxy, '-o', '/dev/null', '-w', '%{http_code}'] })).stdout
      expect(await code('http://127.0.0.1:18097')).toBe('407')
      expect(await code(`http://${USER}:${PROXY_PASS}@127.0.0.1:18097`)).toBe('200')
    } finally {
      process.kill(pid, 'SIGTERM')
    }
    expect(await waitGone([pid])).toEqual([])
    expect(fs.existsSync(pidfile)).toBe(false)
  })
})
