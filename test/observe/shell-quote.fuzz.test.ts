/**
 * shellQuote under fuzzing, checked by a real shell: whatever the text, `sh -c "printf %s WORD"`
 * prints it back unchanged — nothing is expanded, split, globbed or run.
 */
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { shellQuote } from '../../src/observe/shell-quote'
import { tokenText } from '../fuzz-helpers'

const SHELL_TOKENS = ["'", '"', '`', '$(', ')', '${', '}', ';', '&', '|', '<', '>', '\\', ' ', '\t', '\n', '*', '?', '[', ']', '~', '#', '!', '=', '-', '%', 'é']

describe('shellQuote', () => {
  it('leaves plain words alone and quotes the rest', () => {
    expect(shellQuote('bastion.example.com')).toBe('bastion.example.com')
    expect(shellQuote('/tmp/a b')).toBe("'/tmp/a b'")
    expect(shellQuote("it's")).toBe(`'it'\\''s'`)
    expect(shellQuote('')).toBe("''")
    expect(shellQuote('~/x')).toBe("'~/x'")
  })

  it('round-trips any text through /bin/sh', () => {
    const text = fc.oneof(tokenText(SHELL_TOKENS, 8), fc.string({ unit: 'binary', maxLength: 12 })).map((s) => s.replace(/\0/g, ''))
    fc.assert(
      fc.property(text, (s) => {
        const out = execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote(s)}`], { encoding: 'utf8' })
        expect(out).toBe(s)
      }),
      { numRuns: 150 },
    )
  })
})
