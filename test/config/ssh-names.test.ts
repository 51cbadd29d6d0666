import { describe, expect, it } from 'vitest'
import { checkSshHostname, checkSshUser, validSshHostname, validSshUser } from '../../src/config/ssh-names'

// The cases of OpenSSH 9.6's ssh_valid_hostname() / ssh_valid_ruser() (readconf.c).
describe('validSshHostname', () => {
  it.each(['bastion', 'a.b-c_d', '10.0.0.1', '2001:db8::1', 'fe80::1%eth0', 'host*', '[x]', 'h~', 'h#', 'h!', 'h=1', 'h/x', 'h@x', 'ünï', ''])(
    'accepts %j',
    (h) => expect(validSshHostname(h)).toBe(true),
  )
  it.each(['-oProxyCommand=x', 'h$(id)', 'h`id`', "h'", 'h"', 'h\\', 'h;id', 'h&', 'h<', 'h>', 'h|id', 'h(', 'h)', 'h{', 'h}', 'a,b', 'h x', 'h\tx', 'h\nx', 'h\rx', 'h\vx', 'h\fx', 'h\0', 'h\x1b[2J', 'h\x7f'])(
    'refuses %j',
    (h) => expect(validSshHostname(h)).toBe(false),
  )
})

describe('validSshUser', () => {
  it.each(['alice', 'CORP\\alice', 'a$b', 'first last', 'a,b', 'a@corp.example', 'a-b', 'a- b', 'ünï'])('accepts %j', (u) =>
    expect(validSshUser(u)).toBe(true),
  )
  it.each(['-l', 'a -oProxyCommand=x', 'a\t-x', 'trailing\\', 'u$(id)', 'u`id`', "u'", 'u"', 'u;id', 'u&', 'u<', 'u>', 'u|', 'u(', 'u)', 'u{', 'u}', 'u\n', 'u\x7f'])(
    'refuses %j',
    (u) => expect(validSshUser(u)).toBe(false),
  )
})

describe('check*', () => {
  it('throw USAGE naming the argument, with the name JSON-quoted (no raw control characters)', () => {
    expect(() => checkSshHostname('h\x1b]0;x\x07', '-J hop')).toThrow(
      expect.objectContaining({ code: 'USAGE', message: '-J hop: host name "h\\u001b]0;x\\u0007" contains characters ssh does not allow' }),
    )
    expect(() => checkSshUser('u;id', 'destination "u;id@h"')).toThrow(expect.objectContaining({ code: 'USAGE', hint: expect.stringMatching(/shell syntax/) }))
  })
})
