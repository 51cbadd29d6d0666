/**
 * Internet checksum (RFC 1071): the ones-complement of the ones-complement sum of 16-bit words.
 *
 * `sum16` returns the *unfolded* sum so partial sums (pseudo-header, header, payload) can be
 * added before one final fold. A JS number holds the sum of a 64 KiB packet exactly (< 2^32),
 * so folding once at the end is enough; four bytes per iteration keeps the loop short, which
 * matters because every packet we send is summed over its whole payload.
 */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
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

/** Folds an unfolded sum to 16 bits (end-around carry). */
export function fold(s: number): number {
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000)
  return s
}

/** The checksum field value for an unfolded sum. */
export function finish(s: number): number {
  return ~fold(s) & 0xffff
}
