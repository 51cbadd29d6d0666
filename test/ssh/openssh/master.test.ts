/**
 * The master's argv (what must hold, then the user's options, then our defaults: ssh keeps the
 * first value it sees), the mapping of real OpenSSH messages to our error codes, and the checks
 * before reusing a user's control socket.
 */
import * as fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { masterArgv, parseSshVersion } from '../../../src/ssh/openssh/master-argv'
import { mapMasterOutcome } from '../../../src/ssh/openssh/master-errors'
import { checkControlSocket, userControlPath } from '../../../src/ssh/openssh/reuse'

const base = {
  request: { destination: 'admin@bastion:2222', configFile: '/cfg', identities: ['/k1'], jump: 'j1', options: ['ServerAliveInterval=5', 'User=x'] },
  socketPath: '/run/user/1/st/m-1',
  version: { major: 9, minor: 2 },
  interactive: true,
  serverAliveInterval: 15,
  serverAliveCountMax: 3,
}

describe('masterArgv', () => {
  it('puts what must hold first, the user options next, our keepalive defaults last, the host after --', () => {
    const a = masterArgv(base)
    expect(a.slice(0, 6)).toEqual(['-M', '-S', '/run/user/1/st/m-1', '-N', '-n', '-o'])
    expect(a.filter((x) => x === '-M')).toHaveLength(1) // -M twice would mean "ask"
    const at = (x: string) => a.indexOf(x)
    expect(at('ControlPersist=no')).toBeLessThan(at('ServerAliveInterval=5'))
    expect(at('ServerAliveInterval=5')).toBeLessThan(at('ServerAliveInterval=15'))
    expect(a).toContain('ClearAllForwardings=yes')
    expect(a).toContain('ForkAfterAuthentication=no')
    expect(a).not.toContain('BatchMode=yes')
    expect(a.slice(a.indexOf('-F'), a.indexOf('-F') + 2)).toEqual(['-F', '/cfg'])
    expect(a.slice(-2)).toEqual(['--', 'bastion'])
    expect(a).toEqual(expect.arrayContaining(['-p', '2222', '-l', 'admin', '-i', '/k1', '-J', 'j1']))
  })

  it('without a terminal forces BatchMode; before OpenSSH 8.7 it does not pass options that version lacks', () => {
    const a = masterArgv({ ...base, interactive: false, version: { major: 7, minor: 4 } })
    expect(a.indexOf('BatchMode=yes')).toBeLessThan(a.indexOf('User=x'))
    expect(a).not.toContain('ForkAfterAuthentication=no')
  })

  it('parses ssh -V', () => {
    expect(parseSshVersion('OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026')).toEqual({ major: 9, minor: 2 })
    expect(parseSshVersion('OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2')).toEqual({ major: 8, minor: 1 })
    expect(parseSshVersion('dropbear v2022.83')).toBeUndefined()
  })
})

const outcome = (stderr: string[], interactive = false) => ({ code: 255, signal: null, stderr, interactive, destination: 'bastion' })

describe('mapMasterOutcome: real OpenSSH messages to stable codes', () => {
  const cases: Array<[string[], string]> = [
    [['root@10.250.0.1: Permission denied (publickey).'], 'SSH_AUTH'],
    [['Received disconnect from 10.250.0.1 port 22:2: Too many authentication failures'], 'SSH_AUTH'],
    [['No ED25519 host key is known for 10.250.0.1 and you have requested strict checking.', 'Host key verification failed.'], 'HOSTKEY_UNKNOWN'],
    [['@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@', '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @', 'Host key verification failed.'], 'HOSTKEY_MISMATCH'],
    [['ssh: Could not resolve hostname nowhere.invalid: Name or service not known'], 'UNKNOWN_HOST'],
    [['ssh: connect to host 10.250.0.1 port 2222: Connection refused'], 'SSH_CONNECT_REFUSED'],
    [['ssh: connect to host 10.250.0.9 port 22: Connection timed out'], 'SSH_CONNECT_TIMEOUT'],
    [['Unable to negotiate with 10.250.0.1 port 22: no matching key exchange method found. Their offer: sntrup761x25519-sha512@openssh.com'], 'SSH_PROTOCOL'],
    [['ssh: connect to host 10.250.0.9 port 22: No route to host'], 'SSH_CONNECT'],
    [['/root/.ssh/config: line 3: Bad configuration option: foo', '/root/.ssh/config: terminating, 1 bad configuration options'], 'SSH_CONFIG'],
  ]
  it.each(cases)('%j → %s', (lines, code) => {
    const e = mapMasterOutcome(outcome(lines))
    expect(e.code).toBe(code)
    expect(e.message).toMatch(/^ssh: /)
    expect(e.hint).toBeTruthy()
  })

  it('a keepalive timeout says so; a changed key shows the fingerprint the server now presents', () => {
    const k = mapMasterOutcome(outcome(['Timeout, server 10.250.0.1 not responding.']))
    expect(k).toMatchObject({ code: 'SSH_CONNECT_TIMEOUT', message: 'ssh: Timeout, server 10.250.0.1 not responding. (keepalive)' })
    const m = mapMasterOutcome(outcome([
      '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
      'The fingerprint for the ED25519 key sent by the remote host is',
      'SHA256:sPE/IWbfIVdcO8L8qmKGamZQMiRKLuqMrv2YLCRyWnQ.',
      'Host key for 10.250.0.1 has changed and you have requested strict checking.',
      'Host key verification failed.',
    ]))
    expect(m.code).toBe('HOSTKEY_MISMATCH')
    expect(m.message).toBe('ssh: Host key for 10.250.0.1 has changed and you have requested strict checking. (the server now presents ED25519 key SHA256:sPE/IWbfIVdcO8L8qmKGamZQMiRKLuqMrv2YLCRyWnQ)')
  })

  it('says "ssh:" once, also when ssh itself starts its line with it', () => {
    expect(mapMasterOutcome(outcome(['ssh: connect to host 10.250.0.1 port 22: No route to host'])).message).toBe('ssh: connect to host 10.250.0.1 port 22: No route to host')
  })

  it('keeps OpenSSH own decisive line in the message', () => {
    expect(mapMasterOutcome(outcome(['Warning: Permanently added x', 'root@h: Permission denied (publickey).'])).message).toBe('ssh: root@h: Permission denied (publickey).')
  })

  it('an unknown host key without a terminal suggests running ssh once, with the destination quoted', () => {
    const e = mapMasterOutcome({ ...outcome(['Host key verification failed.']), destination: "a b'c" })
    expect(e.hint).toContain(`'a b'\\''c'`)
  })

  it('no message at all still says how it ended', () => {
    expect(mapMasterOutcome({ ...outcome([]), code: null, signal: 'SIGKILL' }).message).toMatch(/killed by SIGKILL/)
  })
})

describe('reuse of a user control socket', () => {
  const stat = (o: Partial<{ socket: boolean; dir: boolean; uid: number; mode: number }>) =>
    ({ isSocket: () => o.socket ?? false, isDirectory: () => o.dir ?? false, uid: o.uid ?? 1000, mode: o.mode ?? 0o700 }) as fs.Stats
  const fsOf = (sock: Parameters<typeof stat>[0], dir: Parameters<typeof stat>[0]) => (p: string) =>
    p.endsWith('/cm') ? stat({ socket: true, ...sock }) : stat({ dir: true, ...dir })

  it('accepts our socket in our directory, or in a sticky shared one', () => {
    expect(checkControlSocket('/home/u/.ssh/cm', 1000, fsOf({}, {}))).toBeUndefined()
    expect(checkControlSocket('/tmp/cm', 1000, fsOf({}, { uid: 0, mode: 0o1777 }))).toBeUndefined()
  })

  it('refuses another user socket, a non-socket, and a directory others may write without sticky bit', () => {
    expect(checkControlSocket('/tmp/cm', 1000, fsOf({ uid: 1001 }, { uid: 0, mode: 0o1777 }))).toMatch(/uid 1001/)
    expect(checkControlSocket('/tmp/cm', 1000, fsOf({ socket: false }, {}))).toMatch(/not a socket/)
    expect(checkControlSocket('/shared/cm', 1000, fsOf({}, { uid: 1000, mode: 0o777 }))).toMatch(/writable by others/)
    expect(checkControlSocket('/x/cm', 1000, () => { throw new Error('ENOENT') })).toMatch(/no master/)
  })

  it('reads the ControlPath ssh -G expanded; none means no reuse', () => {
    expect(userControlPath(new Map([['controlpath', ['/home/u/.ssh/cm-u@h:22']], ['controlmaster', ['auto']]]))).toBe('/home/u/.ssh/cm-u@h:22')
    expect(userControlPath(new Map([['controlpath', ['none']]]))).toBeUndefined()
    expect(userControlPath(new Map())).toBeUndefined()
  })
})
