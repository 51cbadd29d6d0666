import { describe, expect, it } from 'vitest'
import { formatBind, parseBindAddress, parseProxyAuth } from '../../src/config/bind-address'

describe('parseBindAddress', () => {
  it.each([
    ['1080', '127.0.0.1:1080'],
    ['localhost:1080', '127.0.0.1:1080'],
    ['0.0.0.0:1080', '0.0.0.0:1080'],
    ['*:1080', '0.0.0.0:1080'],
    [':1080', '0.0.0.0:1080'],
    ['[::1]:1080', '[::1]:1080'],
    ['192.168.1.5:8080', '192.168.1.5:8080'],
  ])('%s → %s', (spec, out) => expect(formatBind(parseBindAddress(spec, '-D'))).toBe(out))

  it.each(['0', '70000', 'abc', 'host.example:1080', '1.2.3.4:', '[::1]'])('rejects %j as USAGE', (spec) => {
    expect(() => parseBindAddress(spec, '-D')).toThrow(/-D/)
  })

  it('parses proxy credentials, keeping colons in the password', () => {
    expect(parseProxyAuth('alice:s3:cr3t')).toEqual({ username: 'alice', password: 's3:cr3t' })
    expect(() => parseProxyAuth('alice')).toThrow(/USER:PASSWORD/)
    expect(() => parseProxyAuth(':x')).toThrow(/USER:PASSWORD/)
  })
})
