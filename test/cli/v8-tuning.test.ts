import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { tuneV8, V8_FLAGS } from '../../src/cli/v8-tuning'

describe('tuneV8', () => {
  it('sets its flags on the V8 majors known to have them, and nothing elsewhere', () => {
    for (const [version, applies] of [['11.3.244.8-node.38', true], ['9.4.146', true], ['13.6.233', true], ['8.4.371', false], ['14.0.1', false], ['', false], ['x.y', false]] as const) {
      const set: string[] = []
      expect(tuneV8(version, (f) => set.push(f)), version).toBe(applies)
      expect(set).toEqual(applies ? V8_FLAGS : [])
    }
  })

  it("this node's V8 knows every flag: setting them prints nothing, where an unknown flag prints \"unrecognized flag\"", () => {
    const stderrOf = (flags: readonly string[]): string =>
      spawnSync(process.execPath, ['-e', `for (const f of ${JSON.stringify(flags)}) require('node:v8').setFlagsFromString(f)`], { encoding: 'utf8' }).stderr
    expect(stderrOf(['--no-such-flag-for-this-test'])).toMatch(/unrecognized flag/)
    expect(stderrOf(V8_FLAGS)).toBe('')
  })
})
