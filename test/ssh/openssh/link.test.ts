import { describe, expect, it } from 'vitest'
import { byTerminalSignal } from '../../../src/ssh/openssh/link'

const o = (code: number | null, signal: string | null, stderr: string[] = []) => ({ code, signal, stderr, interactive: true, destination: 'b' })

describe('byTerminalSignal: a master ended by the signal our terminal sent us too is not a lost connection (yet)', () => {
  it('SIGINT, SIGHUP, SIGTERM — as a signal or as ssh reports its own ("Killed by signal N.")', () => {
    expect(byTerminalSignal(o(null, 'SIGINT'))).toBe(true)
    expect(byTerminalSignal(o(null, 'SIGHUP'))).toBe(true)
    expect(byTerminalSignal(o(255, null, ['Killed by signal 2.']))).toBe(true)
    expect(byTerminalSignal(o(255, null, ['Killed by signal 15.']))).toBe(true)
  })
  it('anything else is a real loss at once', () => {
    expect(byTerminalSignal(o(null, 'SIGKILL'))).toBe(false)
    expect(byTerminalSignal(o(255, null, ['Timeout, server 10.250.0.1 not responding.']))).toBe(false)
    expect(byTerminalSignal(o(255, null, ['Killed by signal 9.']))).toBe(false)
  })
})
