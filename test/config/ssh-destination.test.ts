import { describe, it, expect } from 'vitest'
import { parseSshDestination } from '../../src/config/ssh-destination'
import { isTunnelError } from '../../src/errors'

describe('parseSshDestination', () => {
  it.each([
    ['bastion', { user: undefined, host: 'bastion', port: undefined }],
    ['me@bastion', { user: 'me', host: 'bastion', port: undefined }],
    ['me@bastion:2222', { user: 'me', host: 'bastion', port: 2222 }],
    ['me@corp.example@bastion', { user: 'me@corp.example', host: 'bastion', port: undefined }],
    ['[2001:db8::1]:2222', { user: undefined, host: '2001:db8::1', port: 2222 }],
    ['u@[::1]', { user: 'u', host: '::1', port: undefined }],
    ['2001:db8::1', { user: undefined, host: '2001:db8::1', port: undefined }],
    ['ssh://u@h:2200', { user: 'u', host: 'h', port: 2200 }],
    ['10.0.0.1:22', { user: undefined, host: '10.0.0.1', port: 22 }],
  ])('%s', (input, expected) => {
    expect(parseSshDestination(input)).toEqual(expected)
  })

  it.each(['', '@host', 'host:0', 'host:65536', 'host:ssh', '[::1', '[::1]x', 'u@', '-oProxyCommand=x'])(
    'rejects %j with USAGE',
    (input) => {
      let err: unknown
      try {
        parseSshDestination(input)
      } catch (e) {
        err = e
      }
      expect(isTunnelError(err, 'USAGE')).toBe(true)
    },
  )
})
