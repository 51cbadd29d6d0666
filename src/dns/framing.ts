/**
 * DNS over TCP framing (RFC 1035 4.2.2, RFC 7766 8): every message is preceded by a two-byte
 * big-endian length. Pure: no I/O. dns-packet's streamDecode assumes one message per chunk,
 * which breaks on pipelined (coalesced) and split frames, hence this decoder.
 */

/** Largest message a 16-bit length prefix can describe. */
export const MAX_FRAME = 65535

/** Result of feeding bytes to a FrameDecoder. */
export interface FrameResult {
  /** Complete messages, in order, without their length prefix. */
  readonly frames: Buffer[]
  /**
   * Set when a frame announced more than maxSize bytes. The stream cannot be resynchronised
   * (there is no frame marker), so the caller should close the connection.
   */
  readonly error?: 'oversized'
}

/** Prefixes msg with its two-byte length. Messages over 65535 bytes cannot be framed. */
export function frame(msg: Buffer): Buffer {
  if (msg.length > MAX_FRAME) throw new RangeError(`DNS message of ${msg.length} bytes cannot be framed`)
  const out = Buffer.allocUnsafe(msg.length + 2)
  out.writeUInt16BE(msg.length, 0)
  msg.copy(out, 2)
  return out
}

/**
 * Stateful decoder for one TCP stream: push() every chunk as it arrives, get back the complete
 * frames. Handles a length prefix split across chunks, messages split across chunks and many
 * messages in one chunk. After an 'oversized' error it returns nothing more.
 */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0)
  private failed = false

  /** @param maxSize largest acceptable message (default 65535). */
  constructor(private readonly maxSize: number = MAX_FRAME) {}

  /** Bytes buffered that do not form a complete frame yet. */
  get buffered(): number {
    return this.pending.length
  }

  push(chunk: Buffer): FrameResult {
    if (this.failed) return { frames: [], error: 'oversized' }
    // Concatenate only when a partial frame is left over; the common case (one or more whole
    // frames per chunk) slices the chunk without copying.
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const frames: Buffer[] = []
    let off = 0
    while (buf.length - off >= 2) {
      const len = buf.readUInt16BE(off)
      if (len > this.maxSize) {
        this.failed = true
        this.pending = Buffer.alloc(0)
        return { frames, error: 'oversized' }
      }
      if (buf.length - off - 2 < len) break
      frames.push(buf.subarray(off + 2, off + 2 + len))
      off += 2 + len
    }
    // Copy the remainder so a small leftover does not pin a large chunk in memory.
    this.pending = off === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(off))
    return { frames }
  }
}
