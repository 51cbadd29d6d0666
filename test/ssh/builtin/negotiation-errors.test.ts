import { describe, expect, it } from 'vitest'
import { negotiationError } from '../../../src/ssh/builtin/negotiation-errors'
import { terminalText } from '../../../src/ssh/builtin/terminal-text'

const at = { host: '10.0.0.1', port: 22 }

describe("'no matching …' like OpenSSH, with whose fault it is", () => {
  it('a post-quantum-only server: SSH_UNSUPPORTED with its offer and the OpenSSH engine', () => {
    const e = negotiationError('Handshake failed: no matching key exchange algorithm', { 'KEX method': ['mlkem768x25519-sha256', 'ext-info-s', 'kex-strict-s-v00@openssh.com'] }, at)!
    expect(e.code).toBe('SSH_UNSUPPORTED')
    expect(e.message).toBe('ssh: 10.0.0.1:22: no matching key exchange method found. Their offer: mlkem768x25519-sha256 (the server offers only post-quantum key exchange, which the built-in engine (ssh2) cannot do)')
    expect(e.hint).toMatch(/--ssh-engine openssh/)
  })

  it("an offer ssh2 could speak, ruled out by the user's list: SSH_PROTOCOL, and how to allow one", () => {
    const e = negotiationError('Handshake failed: no matching host key format', { 'Host key format': ['ssh-ed25519'] }, at)!
    expect(e.code).toBe('SSH_PROTOCOL')
    expect(e.message).toMatch(/no matching host key type found\. Their offer: ssh-ed25519$/)
    expect(e.hint).toBe('your HostKeyAlgorithms rules out what the server offers; allow one, e.g. -o HostKeyAlgorithms=+ssh-ed25519')
  })

  it('other messages are left alone', () => {
    expect(negotiationError('connection reset', {}, at)).toBeUndefined()
  })
})

describe('terminalText: server text cannot drive the terminal', () => {
  it('control characters and bidi overrides become visible escapes; newlines and tabs stay', () => {
    expect(terminalText('a\x1b[2Jb\r\nc\td\u202e')).toBe('a\\033[2Jb\nc\td\\u202e')
  })
})
