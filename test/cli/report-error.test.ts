import { describe, expect, it } from 'vitest'
import { exitCodeFor, formatError } from '../../src/cli/report-error'
import { TunnelError } from '../../src/errors'

describe('formatError', () => {
  it('prints one line with code, and the hint below', () => {
    const e = new TunnelError('BAD_CIDR', 'invalid subnet "x"', { hint: 'use a CIDR' })
    expect(formatError(e)).toBe('subnet-tunnel: error: invalid subnet "x" [BAD_CIDR]\n  hint: use a CIDR')
    expect(exitCodeFor(e)).toBe(2)
  })
  it('keeps only the first line of a multi-line message and shows causes with -v', () => {
    const e = new TunnelError('FW_APPLY', 'nft: add rule: boom\nmore detail', { cause: new Error('exit 1') })
    expect(formatError(e)).toBe('subnet-tunnel: error: nft: add rule: boom [FW_APPLY]')
    expect(formatError(e, 1)).toContain('cause: exit 1')
    expect(exitCodeFor(e)).toBe(1)
  })
  it('wraps unknown throwables as INTERNAL', () => {
    expect(formatError(new Error('oops'))).toBe('subnet-tunnel: error: oops [INTERNAL]')
  })
})
