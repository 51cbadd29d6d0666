import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { OURS_METHODS, DEFAULT_OURS, parseMethodList, resolveOurs, oursContender } = require('../../scripts/bench-lib/ours.js')

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

describe('oursContender', () => {
  it('nat keeps the contender name every target is looked up by', () => {
    expect(oursContender('nat')).toEqual({ contender: 'subnet-tunnel', label: 'subnet-tunnel --method nat', judged: true })
  })

  it('labels the other paths as not judged, under contender names of their own', () => {
    const nft = oursContender('nft')
    const tun = oursContender('tun')
    expect(nft).toEqual({ contender: 'subnet-tunnel nft', label: 'subnet-tunnel --method nft (not judged)', judged: false })
    expect(tun.contender).toBe('subnet-tunnel tun')
    expect(tun.label).toBe('subnet-tunnel --method tun, built-in engine (not judged)')
    expect(() => oursContender('pf')).toThrow()
  })
})
