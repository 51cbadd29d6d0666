/**
 * A pooled `randomFillSync` for SSH packet padding.
 *
 * ssh2 fills the 4–19 random padding bytes of every packet it sends with its own call to
 * crypto.randomFillSync, which costs about 2.3 µs per call in Node 20 (a C++ job per call) —
 * 6 % of our CPU on a stream of short connections, where each one sends about five packets.
 * This filler takes the bytes from a pool refilled by randomFillSync 8 KiB at a time, about
 * a tenth of the cost. The bytes are the same CSPRNG output and each one is handed out once;
 * requests too large to be padding go straight to randomFillSync.
 */
import { randomFillSync } from 'node:crypto'

export interface PaddingPoolStats {
  /** Calls answered from the pool. */
  readonly pooled: number
  /** Times the pool was refilled. */
  readonly refills: number
  /** Calls passed straight to randomFillSync (large, or not a Buffer/typed array). */
  readonly direct: number
}

export type RandomFill = <T extends NodeJS.ArrayBufferView>(buf: T, offset?: number, size?: number) => T

const POOL_BYTES = 8192
const MAX_POOLED = 256

/** A randomFillSync with the same signature and results, drawing small fills from a pool. */
export function pooledRandomFill(fill: (buf: Uint8Array) => unknown = randomFillSync): RandomFill & { stats(): PaddingPoolStats } {
  const pool = new Uint8Array(POOL_BYTES)
  let pos = POOL_BYTES
  let pooled = 0
  let refills = 0
  let direct = 0
  const fn = (<T extends NodeJS.ArrayBufferView>(buf: T, offset?: number, size?: number): T => {
    if (!(buf instanceof Uint8Array) || (offset !== undefined && !Number.isSafeInteger(offset)) || (size !== undefined && !Number.isSafeInteger(size))) {
      direct++
      return randomFillSync(buf, offset, size)
    }
    const off = offset ?? 0
    const len = size ?? buf.length - off
    if (off < 0 || len < 0 || off + len > buf.length || len > MAX_POOLED) {
      // Out of range (randomFillSync throws the usual RangeError) or large: not ours to serve.
      direct++
      return randomFillSync(buf, offset, size)
    }
    if (pos + len > POOL_BYTES) {
      fill(pool)
      pos = 0
      refills++
    }
    buf.set(pool.subarray(pos, pos + len), off)
    pos += len
    pooled++
    return buf
  }) as RandomFill & { stats(): PaddingPoolStats }
  fn.stats = () => ({ pooled, refills, direct })
  return fn
}
