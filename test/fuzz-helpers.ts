/**
 * Shared pieces of the *.fuzz.test.ts files: the "throws nothing but our typed error" check and
 * string generators that mix random text with the tokens a parser cares about, so fuzzing
 * reaches past the first character check.
 */
import fc from 'fast-check'
import { TunnelError, type ErrorCode } from '../src/errors'

export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: TunnelError }

/**
 * Runs fn and returns its value, or the TunnelError it threw when the code is one of `codes`.
 * Anything else thrown (a TypeError, a RangeError, another code) is re-thrown so that the
 * property fails with the original error and fast-check shrinks to the input that caused it.
 */
export function typed<T>(fn: () => T, codes: readonly ErrorCode[]): Outcome<T> {
  try {
    return { ok: true, value: fn() }
  } catch (e) {
    if (e instanceof TunnelError && codes.includes(e.code)) return { ok: false, error: e }
    throw e
  }
}

/** typed() for promises. */
export async function typedAsync<T>(fn: () => Promise<T>, codes: readonly ErrorCode[]): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() }
  } catch (e) {
    if (e instanceof TunnelError && codes.includes(e.code)) return { ok: false, error: e }
    throw e
  }
}

/** Random text of every kind: ASCII, any UTF-16 code unit (lone surrogates too), graphemes. */
export const anyText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
)

/** Strings assembled from `tokens` and short random text, e.g. tokens of an address syntax. */
export function tokenText(tokens: readonly string[], maxPieces = 12): fc.Arbitrary<string> {
  const piece = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...tokens) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
    { weight: 1, arbitrary: fc.nat(70000).map(String) },
  )
  return fc.array(piece, { maxLength: maxPieces }).map((p) => p.join(''))
}

/** Characters that break shells, paths and parsers, for ids and names that must be refused. */
export const NASTY = [';', '|', '&', '$(', '`', '>', '<', '\n', '\r', '\0', ' ', '\t', '/', '\\', '..', '"', "'", '*', '?', '~', '%', '\u00e9', '\u202e', '\ud800', '\uff0f']
