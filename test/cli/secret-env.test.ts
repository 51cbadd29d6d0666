import { describe, expect, it } from 'vitest'
import { parseArgs } from '../../src/cli/args'
import { takeSecretEnv } from '../../src/cli/secret-env'

const quiet = { stdout: () => {}, stderr: () => {} }

describe('takeSecretEnv', () => {
  it('returns SUBNET_TUNNEL_PROXY_AUTH and deletes it from the environment it was read from', () => {
    const env: NodeJS.ProcessEnv = { SUBNET_TUNNEL_PROXY_AUTH: 'alice:s3cret', HOME: '/h' }
    expect(takeSecretEnv(env)).toEqual({ SUBNET_TUNNEL_PROXY_AUTH: 'alice:s3cret' })
    expect(env).toEqual({ HOME: '/h' })
    expect(takeSecretEnv(env)).toEqual({})
  })
})

describe('parseArgs and the proxy credentials', () => {
  it('takes them from the secrets handed in, --proxy-auth winning; never from process.env', () => {
    const args = (a: string[], secrets = {}) => {
      const r = parseArgs(['-r', 'b', '-D', '1080', ...a], '1', quiet, secrets)
      return r.kind === 'tunnel' ? r.args.proxyAuth : 'not a tunnel'
    }
    expect(args([], { SUBNET_TUNNEL_PROXY_AUTH: 'a:env' })).toBe('a:env')
    expect(args(['--proxy-auth', 'a:argv'], { SUBNET_TUNNEL_PROXY_AUTH: 'a:env' })).toBe('a:argv')
    process.env.SUBNET_TUNNEL_PROXY_AUTH = 'a:process-env'
    try {
      expect(args([])).toBeUndefined()
    } finally {
      delete process.env.SUBNET_TUNNEL_PROXY_AUTH
    }
  })
})
