// The built-in engine's prompts on a real terminal (a pty) against real sshd set-ups (issue 14,
// items 5 and 7): keyboard-interactive gets as many rounds as the server allows, prefixed
// (user@host); a wrong passphrase says "Bad passphrase, try again"; "no" at the host key prompt
// ends with "Host key verification failed." and no advice; a server that closes while a prompt is
// open (LoginGraceTime) cancels it cleanly — the terminal is back in its normal mode and what is
// typed next reaches the shell alone — and is not called "permission denied"; the server's Banner
// is shown, and -qq silences it.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { bastionLines, BUILTIN, cliOnce, copyKey, extraSshd, removeDir, tempDir, writeSshConfig, type ExtraSshd } from './lib/builtin-engine'
import { assertCliBuilt } from './lib/cli'
import { CLI_BIN, describeRun, run } from './lib/exec'
import { assertRoot, e2eDescribe } from './lib/guard'
import { PtyProcess, shellQuote } from './lib/pty'
import { newTestbedName, Testbed } from './lib/testbed'
import { AUTH_ALIASES as A, authEnvOf, kbdPassword, type AuthEnv } from './lib/testbed-auth'

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const PASSPHRASE = 'correct horse'

e2eDescribe('built-in engine: prompts on a terminal (pty, real sshd variants)', () => {
  let tb: Testbed
  let env: AuthEnv
  let dir: string
  let encKey: string
  /** sshd with LoginGraceTime 3 and a Banner holding an escape sequence (rsa512 variant's key). */
  let slow: ExtraSshd | undefined
  const ptys: PtyProcess[] = []

  beforeAll(async () => {
    assertRoot()
    assertCliBuilt()
    tb = await Testbed.up(newTestbedName('bp'), { authVariants: true })
    env = authEnvOf(tb)
    dir = tempDir('bprompt')
    // The rsa512 variant's key, encrypted: its passphrase is asked during authentication.
    encKey = copyKey(env.sshKeyRsa, dir, 'id_rsa_enc')
    const p = await run(['ssh-keygen', '-q', '-p', '-P', '', '-N', PASSPHRASE, '-f', encKey])
    if (p.code !== 0) throw new Error(describeRun(p))
    const banner = path.join(dir, 'banner.txt')
    writeFileSync(banner, 'Authorized use only. \x1b[2J\n')
    slow = await extraSshd(tb, dir, path.join(env.dir, 'auth', 'sshd_config.rsa512'), 2292, ['LoginGraceTime 3', `Banner ${banner}`])
  })
  afterAll(async () => {
    for (const p of ptys) await p.kill()
    await slow?.stop()
    if (dir) removeDir(dir)
    await tb?.down()
  })

  /** The CLI on a pty in the client namespace; `after` runs in the same shell once it exits. */
  const onPty = (args: readonly string[], after = ''): PtyProcess => {
    const cli = [process.execPath, CLI_BIN, ...BUILTIN, ...args, tb.env.privateNet, 'exec', '--', 'true'].map(shellQuote).join(' ')
    const env = { ...process.env }
    delete env.SUBNET_TUNNEL_NO_TTY
    delete env.SSH_AUTH_SOCK
    delete env.SSH_ASKPASS
    const p = PtyProcess.start(['sh', '-c', `${cli}; echo "cli-exit:$?"; ${after}`], { prefix: tb.nsArgv('client', []), env })
    ptys.push(p)
    return p
  }

  it('keyboard-interactive: two wrong answers, then the right one; every prompt is (user@host) Password:', async () => {
    const prompt = new RegExp(`\\(${esc(env.kbdUser)}@${esc(env.bastionIp)}\\) Password: `)
    const p = onPty(['-F', env.sshConfig, '-r', A.kbd])
    for (const answer of ['wrong-1', 'wrong-2', kbdPassword(env)]) {
      const from = p.output.length
      await p.waitFor(prompt, 20_000, from)
      p.write(`${answer}\r`)
      await p.waitFor(/\n/, 5_000, p.output.length - 1).catch(() => undefined)
    }
    await p.waitFor(/cli-exit:0/, 30_000)
    expect(p.count(prompt)).toBe(3)
    expect(p.output).not.toMatch(/wrong-1|wrong-2/) // echo off
  })

  it('an encrypted key: a wrong passphrase says "Bad passphrase, try again", the right one gets in', async () => {
    const p = onPty(['-F', env.sshConfig, '-r', A.rsa512, '-i', encKey, '-o', 'IdentitiesOnly=yes'])
    await p.waitFor(new RegExp(`Enter passphrase for key '${esc(encKey)}': `))
    p.write('nope\r')
    await p.waitFor(new RegExp(`Bad passphrase, try again for '${esc(encKey)}': `))
    p.write(`${PASSPHRASE}\r`)
    await p.waitFor(/cli-exit:0/, 30_000)
    expect(p.output).toMatch(/\bup:/)
  })

  it('"no" at the host key prompt: "Host key verification failed." and no ssh-keyscan / accept-new advice', async () => {
    const kh = path.join(dir, 'known_hosts.empty')
    const p = onPty(['-F', env.sshConfig, '-r', 'bastion', '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=ask'])
    await p.waitFor(/Are you sure you want to continue connecting \(yes\/no\/\[fingerprint\]\)\? /)
    p.write('no\r')
    await p.waitFor(/cli-exit:1/)
    expect(p.output).toMatch(/Host key verification failed\. \[HOSTKEY_UNKNOWN\]/)
    expect(p.output).not.toMatch(/ssh-keyscan|accept-new|hint:/)
  })

  it('the server closes while the passphrase prompt is open: prompt cancelled, terminal restored, typed text gone, not "permission denied"', async () => {
    const cfg = writeSshConfig(path.join(dir, 'slow.conf'), {
      slow: [...bastionLines(tb, slow!.port), `IdentityFile ${encKey}`, 'IdentitiesOnly yes'],
    })
    const p = onPty(['-F', cfg, '-r', 'slow'], `echo "tty:$(stty -a | tr ' ' '\\n' | grep -xE -- '-?(echo|icanon)' | tr '\\n' ,)"; read line; echo "got:[$line]"`)
    await p.waitFor(/Enter passphrase for key/)
    p.write('half-typed') // no Enter: sshd's LoginGraceTime ends the login first
    await p.waitFor(/ \(cancelled\)/, 15_000)
    await p.waitFor(/cli-exit:1/)
    expect(p.output).toMatch(/connection closed by the server during authentication \[SSH_CONNECT\]/)
    expect(p.output).toMatch(/LoginGraceTime/)
    expect(p.output).not.toMatch(/permission denied/i)
    expect((await p.waitFor(/tty:(\S*)/))[1]).toBe('icanon,echo,') // both on again, as before the prompt
    p.write('next\r')
    // The shell reads only what was typed after the prompt closed.
    expect((await p.waitFor(/got:\[(.*)\]/))[1]).toBe('next')
  })

  it("the server's Banner is shown (control characters made visible); -qq silences it", async () => {
    const cfg = writeSshConfig(path.join(dir, 'banner.conf'), {
      bn: [...bastionLines(tb, slow!.port), `IdentityFile ${env.sshKeyRsa}`, 'IdentitiesOnly yes'],
    })
    const r = await cliOnce(tb, 'bn', [], {}, cfg)
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stderr).toContain('Authorized use only. \\033[2J')
    expect(r.stderr).not.toContain('\x1b[2J')
    const quiet = await cliOnce(tb, 'bn', ['-qq'], {}, cfg)
    expect(quiet.code, describeRun(quiet)).toBe(0)
    expect(quiet.stderr).not.toContain('Authorized use only')
  })
})
