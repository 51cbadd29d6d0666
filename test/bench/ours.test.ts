import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { OURS_METHODS, ENGINES, DEFAULT_OURS, parseMethodList, resolveOurs, resolveEngines, rowName, oursRows, oursContender } = require('../../scripts/bench-lib/ours.js')
const { README_ROW, OPENSSH_ROW } = require('../../scripts/bench-lib/targets.js')

const SUITES = ['bulk', 'startup', 'connrate', 'ttfb', 'memory', 'dns']

describe('resolveOurs', () => {
  it('defaults: nat and tun for the short TCP suites, nat alone for memory and dns', () => {
    expect(resolveOurs([], SUITES)).toEqual({
      bulk: ['nat', 'tun'], startup: ['nat', 'tun'], connrate: ['nat', 'tun'], ttfb: ['nat', 'tun'], memory: ['nat'], dns: ['nat'],
    })
  })

  it('a bare list sets every suite, memory and dns included', () => {
    const r = resolveOurs(['nat,nft,tun'], SUITES)
    for (const s of SUITES) expect(r[s]).toEqual(['nat', 'nft', 'tun'])
  })

  it('SUITE=LIST sets one suite; later arguments win', () => {
    const r = resolveOurs(['nat', 'memory=nat,tun', 'bulk=nft'], SUITES)
    expect(r.memory).toEqual(['nat', 'tun'])
    expect(r.bulk).toEqual(['nft'])
    expect(r.ttfb).toEqual(['nat'])
    expect(resolveOurs(['bulk=tun', 'nat'], SUITES).bulk).toEqual(['nat'])
  })

  it('a suite without a default runs nat alone', () => {
    expect(resolveOurs([], ['newsuite'])).toEqual({ newsuite: ['nat'] })
  })

  it('rejects unknown suites and methods, and empty lists', () => {
    expect(() => resolveOurs(['zz=nat'], SUITES)).toThrow(/unknown suite 'zz'/)
    expect(() => resolveOurs(['nat,pf'], SUITES)).toThrow(/unknown method 'pf'/)
    expect(() => resolveOurs(['bulk='], SUITES)).toThrow(/empty/)
  })

  it('does not share arrays between suites or with the defaults', () => {
    const r = resolveOurs([], SUITES)
    r.bulk.push('nft')
    expect(r.connrate).toEqual(['nat', 'tun'])
    expect(DEFAULT_OURS.bulk).toEqual(['nat', 'tun'])
  })
})

describe('parseMethodList', () => {
  it('puts methods in table order and drops duplicates and blanks', () => {
    expect(parseMethodList('tun, nat,,tun')).toEqual(['nat', 'tun'])
    expect(parseMethodList('tun,nft,nat')).toEqual(OURS_METHODS)
  })
})

describe('row naming', () => {
  it('names a row METHOD/ENGINE, and crosses methods with engines method-major', () => {
    expect(rowName('nat', 'openssh')).toBe('nat/openssh')
    expect(oursRows(['nat', 'tun'], ['builtin', 'openssh']).map((r: { method: string; engine: string }) => rowName(r.method, r.engine))).toEqual([
      'nat/builtin', 'nat/openssh', 'tun/builtin', 'tun/openssh',
    ])
    expect(oursRows(['nat'], ['builtin'])).toEqual([{ method: 'nat', engine: 'builtin' }])
  })

  it('the judged rows are the targets\' rows: README on nat/builtin, issue 13 on nat/openssh', () => {
    expect(README_ROW).toBe('nat/builtin')
    expect(OPENSSH_ROW).toBe('nat/openssh')
    expect(oursContender('nat', 'builtin')).toEqual({
      contender: 'subnet-tunnel nat/builtin', row: 'nat/builtin', label: 'subnet-tunnel nat/builtin', method: 'nat', engine: 'builtin', judged: true,
    })
    expect(oursContender('nat', 'openssh').judged).toBe(true)
    expect(oursContender('nat', 'openssh').label).toBe('subnet-tunnel nat/openssh')
  })

  it('labels every other row as not judged, under a contender name of its own', () => {
    const tun = oursContender('tun', 'openssh')
    expect(tun).toEqual({
      contender: 'subnet-tunnel tun/openssh', row: 'tun/openssh', label: 'subnet-tunnel tun/openssh (not judged)', method: 'tun', engine: 'openssh', judged: false,
    })
    expect(oursContender('nft', 'builtin').label).toBe('subnet-tunnel nft/builtin (not judged)')
    // Which rows are judged follows the targets, not a hard-coded method.
    expect(oursContender('nat', 'builtin', ['tun/builtin']).judged).toBe(false)
    expect(oursContender('tun', 'builtin', ['tun/builtin']).label).toBe('subnet-tunnel tun/builtin')
    expect(() => oursContender('pf', 'builtin')).toThrow(/method/)
    expect(() => oursContender('nat', 'libssh')).toThrow(/engine/)
  })
})

describe('resolveEngines', () => {
  it('defaults to every engine the CLI supports, in table order', () => {
    expect(resolveEngines(undefined, ['builtin'])).toEqual(['builtin'])
    expect(resolveEngines(undefined, ['openssh', 'builtin'])).toEqual(ENGINES)
  })

  it('takes a list in table order, without duplicates', () => {
    expect(resolveEngines('openssh,builtin,openssh', ENGINES)).toEqual(['builtin', 'openssh'])
    expect(resolveEngines('openssh', ENGINES)).toEqual(['openssh'])
  })

  it('refuses an engine the CLI lacks, an unknown one, and an empty list', () => {
    expect(() => resolveEngines('openssh', ['builtin'])).toThrow(/does not support openssh/)
    expect(() => resolveEngines('libssh', ENGINES)).toThrow(/unknown engine 'libssh'/)
    expect(() => resolveEngines(',', ENGINES)).toThrow(/empty/)
  })
})
