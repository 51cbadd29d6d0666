import { describe, expect, it } from 'vitest'
import { TunnelError } from '../../../src/errors'
import { cipherPreference, cpuHasAes } from '../../../src/ssh/builtin/algorithms'
import { mapChannelOpenError, mapConnectError } from '../../../src/ssh/builtin/errors-map'

const sys = (code: string) => Object.assign(new Error(`connect ${code}`), { code })
const where = { host: 'bastion.example', port: 2222 }

describe('mapConnectError', () => {
  it.each([
    ['ENOTFOUND', 'UNKNOWN_HOST', 'ssh: cannot resolve host bastion.example'],
    ['EAI_AGAIN', 'UNKNOWN_HOST', 'ssh: cannot resolve host bastion.example'],
    ['ECONNREFUSED', 'SSH_CONNECT_REFUSED', 'ssh: connect to bastion.example:2222: connection refused'],
    ['ETIMEDOUT', 'SSH_CONNECT_TIMEOUT', 'ssh: connect to bastion.example:2222: timed out'],
    ['EHOSTUNREACH', 'SSH_CONNECT', 'ssh: connect to bastion.example:2222: host unreachable'],
    ['ENETUNREACH', 'SSH_CONNECT', 'ssh: connect to bastion.example:2222: network unreachable'],
  ])('%s → %s', (code, want, msg) => {
    const e = mapConnectError(sys(code), where)
    expect(e.code).toBe(want)
    expect(e.message).toBe(msg)
    expect(e.message).not.toContain('\n')
  })

  it('finds the code inside an AggregateError (happy eyeballs) and names the hop', () => {
    const agg = Object.assign(new AggregateError([sys('ECONNREFUSED'), sys('ECONNREFUSED')], 'x'), {})
    const e = mapConnectError(agg, { ...where, via: 'via jump host j1' })
    expect(e.code).toBe('SSH_CONNECT_REFUSED')
    expect(e.message).toContain('bastion.example:2222 (via jump host j1)')
    expect(e.hint).toContain('2222')
  })

  it('ssh2 handshake failures → SSH_PROTOCOL; TunnelErrors pass through', () => {
    const hs = Object.assign(new Error('Handshake failed: no matching key exchange algorithm'), { level: 'handshake' })
    expect(mapConnectError(hs, where).code).toBe('SSH_PROTOCOL')
    const own = new TunnelError('HOSTKEY_REVOKED', 'revoked')
    expect(mapConnectError(own, where)).toBe(own)
  })
})

describe('mapChannelOpenError', () => {
  const dst = { host: '10.0.1.20', port: 3306 }
  const fail = (reason: number, description: string) =>
    Object.assign(new Error(`(SSH) Channel open failure: ${description}`), { reason })

  it.each([
    [1, 'open failed', 'prohibited'],
    [2, 'Connection refused', 'refused'],
    [2, 'No route to host', 'unreachable'],
    [2, 'Network is unreachable', 'network-unreachable'],
    [2, 'Connection timed out', 'unreachable'],
    [2, 'open failed', 'resource'], // OpenSSH out of file descriptors (socket() EMFILE)
    [3, 'unknown channel type', 'unsupported'],
    [4, 'resource shortage', 'resource'],
  ])('reason %i "%s" → %s', (code, desc, want) => {
    const e = mapChannelOpenError(fail(code, desc), dst, 'bastion')
    expect(e.code).toBe('CHANNEL_OPEN')
    expect(e.reason).toBe(want)
    expect(e.message.startsWith('ssh: open 10.0.1.20:3306: ')).toBe(true)
  })

  it('says who saw the failure', () => {
    expect(mapChannelOpenError(fail(2, 'No route to host'), dst, 'bastion').message).toBe(
      'ssh: open 10.0.1.20:3306: no route to host (as seen from bastion)',
    )
  })
})

describe('cipher preference', () => {
  it('reads the aes flag from /proc/cpuinfo text', () => {
    expect(cpuHasAes('processor : 0\nflags\t\t: fpu sse2 aes avx\n')).toBe(true)
    expect(cpuHasAes('processor : 0\nflags\t\t: fpu sse2 avx\n')).toBe(false)
    expect(cpuHasAes('Features\t: fp asimd aes pmull\n')).toBe(true)
    expect(cpuHasAes('nothing here')).toBeUndefined()
  })

  it('puts AES-GCM first with AES-NI and chacha20 first without; off Linux keeps defaults', () => {
    expect(cipherPreference(true)![0]).toBe('aes128-gcm@openssh.com')
    const noAes = cipherPreference(false)!
    expect(noAes.indexOf('aes128-gcm@openssh.com')).toBeGreaterThan(0)
    expect(cipherPreference(undefined)).toBeUndefined()
  })
})
