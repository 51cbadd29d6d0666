/**
 * Wire basics of the OpenSSH engine (pure: no I/O): SSH wire types and the frame splitter.
 *
 * Two framings share one socket, one after the other (PROTOCOL.mux):
 *  - the mux protocol, until MUX_S_PROXY: `uint32 length | uint32 type | body` (mux-messages.ts);
 *  - proxy mode, after it: SSH connection-protocol messages, unencrypted and unpadded:
 *    `uint32 length | byte 0 (padding length) | byte type | payload` (conn-messages.ts).
 * Both start with a uint32 length, so one frame splitter serves both.
 */
import { TunnelError } from '../../errors'

/**
 * Largest frame accepted from the master. OpenSSH's own limit for a packet is 256 KiB
 * (PACKET_MAX_SIZE); mux messages are far smaller. A bigger length means a broken stream.
 */
export const MAX_FRAME = 256 * 1024

/** A malformed frame or message: the connection it came on cannot be trusted any more. */
export class WireError extends TunnelError {
  constructor(message: string) {
    super('SSH_PROTOCOL', `openssh: ${message}`, { hint: 'the OpenSSH master sent something unexpected; run with -vv and report it' })
  }
}

/** Reads SSH wire types from a buffer; every read is bounds-checked (WireError when short). */
export class Reader {
  private off = 0
  constructor(private readonly buf: Buffer, start = 0) {
    this.off = start
  }

  get remaining(): number {
    return this.buf.length - this.off
  }

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new WireError('truncated message')
  }

  u8(): number {
    this.need(1)
    return this.buf[this.off++]!
  }

  bool(): boolean {
    return this.u8() !== 0
  }

  u32(): number {
    this.need(4)
    const v = this.buf.readUInt32BE(this.off)
    this.off += 4
    return v
  }

  /** An SSH `string` as bytes (a view, not a copy). */
  bytes(): Buffer {
    const n = this.u32()
    this.need(n)
    const b = this.buf.subarray(this.off, this.off + n)
    this.off += n
    return b
  }

  /** An SSH `string` decoded as UTF-8. */
  string(): string {
    return this.bytes().toString('utf8')
  }

  /** Whatever is left (a view). */
  rest(): Buffer {
    const b = this.buf.subarray(this.off)
    this.off = this.buf.length
    return b
  }
}

/** Builds SSH wire values; `frame()` prefixes the total length. */
export class Writer {
  private readonly parts: Buffer[] = []
  private len = 0

  private push(b: Buffer): this {
    this.parts.push(b)
    this.len += b.length
    return this
  }

  u8(v: number): this {
    return this.push(Buffer.of(v & 0xff))
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0)
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4)
    b.writeUInt32BE(v >>> 0)
    return this.push(b)
  }

  string(v: string | Buffer): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v
    return this.u32(b.length).push(b)
  }

  /** `uint32 length | contents` as one buffer. */
  frame(): Buffer {
    const head = Buffer.allocUnsafe(4)
    head.writeUInt32BE(this.len)
    return Buffer.concat([head, ...this.parts], 4 + this.len)
  }
}

/**
 * Splits a byte stream into length-prefixed frames (both framings above). Frames are handed
 * out as views into the received chunk when they fit in it, copied only when they straddle
 * chunks. A length above `max` is a broken stream: WireError.
 */
export class FrameSplitter {
  private pending: Buffer[] = []
  private pendingLen = 0
  /** Length of the frame being assembled (incl. its 4-byte prefix), or -1 until known. */
  private want = -1
  private stopped = false
  private rest: Buffer[] = []

  constructor(
    private readonly onFrame: (frame: Buffer) => void,
    private readonly max = MAX_FRAME,
  ) {}

  push(chunk: Buffer): void {
    if (this.stopped) {
      this.rest.push(chunk)
      return
    }
    let buf = chunk
    if (this.pendingLen > 0) {
      // Complete the pending frame first, copying just what it needs.
      this.pending.push(chunk)
      this.pendingLen += chunk.length
      if (this.want < 0) {
        if (this.pendingLen < 4) return
        const head = Buffer.concat(this.pending, this.pendingLen)
        this.pending = [head]
        this.want = this.lengthAt(head, 0) + 4
      }
      if (this.pendingLen < this.want) return
      const all = Buffer.concat(this.pending, this.pendingLen)
      const want = this.want
      this.pending = []
      this.pendingLen = 0
      this.want = -1
      this.onFrame(all.subarray(4, want))
      buf = all.subarray(want)
      if (this.stopped) {
        if (buf.length > 0) this.rest.push(buf)
        return
      }
    }
    let off = 0
    while (buf.length - off >= 4) {
      const total = this.lengthAt(buf, off) + 4
      if (buf.length - off < total) break
      this.onFrame(buf.subarray(off + 4, off + total))
      off += total
      if (this.stopped) {
        if (off < buf.length) this.rest.push(buf.subarray(off))
        return
      }
    }
    if (off < buf.length) {
      const rest = buf.subarray(off)
      this.pending = [rest]
      this.pendingLen = rest.length
      this.want = rest.length >= 4 ? this.lengthAt(rest, 0) + 4 : -1
    }
  }

  /**
   * Stops splitting after the frame being delivered (call it from onFrame): the bytes after
   * that frame are kept for takeRest(). The mux → proxy switch happens at such a boundary.
   */
  stop(): void {
    this.stopped = true
  }

  /** Bytes received after stop() (in order), for the next reader of the stream. */
  takeRest(): Buffer {
    const b = Buffer.concat(this.rest)
    this.rest = []
    return b
  }

  private lengthAt(b: Buffer, off: number): number {
    const n = b.readUInt32BE(off)
    if (n > this.max) throw new WireError(`frame of ${n} bytes (at most ${this.max} expected)`)
    return n
  }
}
