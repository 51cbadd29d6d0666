import { describe, expect, it } from 'vitest'
import { applyAlgorithmSpec, defaultsFrom, OPENSSH_DEFAULTS, userAlgorithms } from '../../src/config/ssh-algorithms'

const D = ['a-1', 'a-2', 'b-1', 'c']

describe('ssh_config algorithm lists (+ - ^ forms)', () => {
  it('a plain list replaces the defaults, patterns pick from them in their order', () => {
    expect(applyAlgorithmSpec('c,a-1', D)).toEqual(['c', 'a-1'])
    expect(applyAlgorithmSpec('b-*,a-?', D)).toEqual(['b-1', 'a-1', 'a-2'])
  })

  it('+ appends, - removes with wildcards, ^ puts first', () => {
    expect(applyAlgorithmSpec('+x,a-1', D)).toEqual([...D, 'x'])
    expect(applyAlgorithmSpec('-a-*', D)).toEqual(['b-1', 'c'])
    expect(applyAlgorithmSpec('^c,b-1', D)).toEqual(['c', 'b-1', 'a-1', 'a-2'])
  })

  it('the default list (what ssh -G prints when nothing is set) counts as not set', () => {
    expect(userAlgorithms(D.join(','), D)).toBeUndefined()
    expect(userAlgorithms('', D)).toBeUndefined()
    expect(userAlgorithms('-nothing-matches', D)).toBeUndefined()
    expect(userAlgorithms('a-2', D)).toEqual(['a-2'])
  })

  it("defaults come from the binary's own ssh -G -F /dev/null; OpenSSH 9's where a list is missing", () => {
    const d = defaultsFrom(new Map([['kexalgorithms', ['x,y']]]))
    expect(d.kexalgorithms).toEqual(['x', 'y'])
    expect(d.macs).toEqual(OPENSSH_DEFAULTS.macs)
    expect(defaultsFrom(undefined)).toEqual(OPENSSH_DEFAULTS)
  })
})
