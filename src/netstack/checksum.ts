/**
 * Internet checksum (RFC 1071): the ones-complement of the ones-complement sum of 16-bit words.
 *
 * `sum16` returns an *unfolded* sum so partial sums (pseudo-header, header, payload) can be
 * added before one final fold. Only its value modulo 0xffff matters (ones-complement addition
 * is addition mod 2^16 − 1), and it is zero only for all-zero data, so `finish` gives the same
 * field and the same verdict as summing word by word.
 *
 * Every byte we carry is summed once (verified on the way in, sealed on the way out), so the
 * loop matters: long runs are summed as native 32-bit words of an aligned Uint32Array, about
 * five times the speed of the byte loop. That is sound by RFC 1071 §2(A)/(B): the sum is
 * associative, and a sum taken with the bytes of every word swapped (little-endian words, or
 * a run that starts at an odd offset) is the byte swap of the true sum — swapping is
 * multiplying by 256 mod 0xffff.
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** Below this length the word loop's setup costs more than it saves. */
const WIDE_MIN = 64

/** Unfolded sum of buf[start, end) as big-endian 16-bit words (an odd last byte padded with zero). */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  if (end - start < WIDE_MIN) return sumBytes(buf, start, end, initial)
  // Bytes before the first 4-byte boundary of the underlying memory, in the right pairing.
  const head = (4 - ((buf.byteOffset + start) & 3)) & 3
  let s = sumBytes(buf, start, start + head, initial)
  const from = start + head
  const words = (end - from) >>> 2
  // < 2^21 words (8 MiB) keeps the sum below 2^53, exact in a double; packets are ≤ 64 KiB.
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset + from, words)
  let w = 0
  let k = 0
  // Unrolled: four independent loads per add chain runs ~2.5x faster than one (V8, x86_64).
  for (const n4 = words - 3; k < n4; k += 4) w += u32[k] + u32[k + 1] + u32[k + 2] + u32[k + 3]
  for (; k < words; k++) w += u32[k]
  let f = fold(w)
  if (LITTLE_ENDIAN) f = swap(f)
  // An odd head means the words paired bytes one off from `start`: swap back.
  s += head & 1 ? swap(f) : f
  const tail = from + words * 4
  if (tail < end) {
    const t = fold(sumBytes(buf, tail, end, 0))
    s += head & 1 ? swap(t) : t
  }
  return s
}

function sumBytes(buf: Uint8Array, start: number, end: number, initial: number): number {
  let s = initial
  let i = start
  const even = end - ((end - start) & 1)
  const last4 = even - 3
  for (; i < last4; i += 4) s += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3])
  for (; i < even; i += 2) s += (buf[i] << 8) | buf[i + 1]
  // An odd trailing byte is padded with a zero byte on the right.
  if (i < end) s += buf[i] << 8
  return s
}

function swap(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8)
}

/** Folds an unfolded sum to 16 bits (end-around carry). */
export function fold(s: number): number {
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000)
  return s
}

/** The checksum field value for an unfolded sum. */
export function finish(s: number): number {
  return ~fold(s) & 0xffff
}
