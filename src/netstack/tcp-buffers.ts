/**
 * The two buffers of a TCP flow: what we sent but the peer has not acknowledged (kept for
 * retransmission), and segments that arrived ahead of a gap (kept until the gap fills).
 */
import { seqDiff } from './tcp-wire'

/**
 * Bytes from SND.UNA onward, as the chunks the stream gave us (never concatenated). A cursor
 * remembers the last chunk read, so sending a window of segments in order costs O(1) per
 * segment however many chunks are queued.
 */
export class SendBuffer {
  private chunks: Buffer[] = []
  private head = 0 // index of the first live chunk
  private headOff = 0 // bytes of chunks[head] already acknowledged
  /** Bytes held (acknowledged ones are dropped at once). */
  length = 0
  private curIdx = 0 // cursor: chunk index and its start, as an offset from SND.UNA
  private curStart = 0

  push(b: Buffer): void {
    if (b.length === 0) return
    this.chunks.push(b)
    this.length += b.length
  }

  /** Drops n acknowledged bytes from the front. */
  consume(n: number): void {
    if (n <= 0) return
    this.length -= n
    n += this.headOff
    while (n > 0 && this.head < this.chunks.length && n >= this.chunks[this.head].length) {
      n -= this.chunks[this.head].length
      this.head++
    }
    this.headOff = n
    // Compact now and then rather than shift() per chunk (O(n) each).
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
    this.curIdx = this.head
    this.curStart = -this.headOff
  }

  /** Copies len bytes starting `off` bytes after SND.UNA into target at tOff. */
  copyOut(off: number, len: number, target: Buffer, tOff: number): void {
    if (this.curIdx < this.head || off < this.curStart) {
      this.curIdx = this.head
      this.curStart = -this.headOff
    }
    let i = this.curIdx
    let start = this.curStart
    while (off >= start + this.chunks[i].length) {
      start += this.chunks[i].length
      i++
    }
    this.curIdx = i
    this.curStart = start
    while (len > 0) {
      const c = this.chunks[i]
      const from = off - start
      const n = Math.min(len, c.length - from)
      c.copy(target, tOff, from, from + n)
      tOff += n
      off += n
      len -= n
      start += c.length
      i++
    }
  }
}

interface Pending {
  seq: number
  data: Buffer
  fin: boolean
}

/**
 * Out-of-order segments, sorted by sequence number, bounded in bytes and count. Overlaps are
 * resolved when segments are taken out, so insertion is a binary search plus a splice.
 */
export class ReorderQueue {
  private readonly q: Pending[] = []
  bytes = 0

  constructor(
    private readonly maxBytes: number,
    private readonly maxSegments: number,
  ) {}

  get size(): number {
    return this.q.length
  }

  /** Keeps a segment that starts after RCV.NXT; false when it does not fit (dropped). */
  insert(seq: number, data: Buffer, fin: boolean): boolean {
    if (this.q.length >= this.maxSegments || this.bytes + data.length > this.maxBytes) return false
    let lo = 0
    let hi = this.q.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (seqDiff(this.q[mid].seq, seq) < 0) lo = mid + 1
      else hi = mid
    }
    const same = this.q[lo]
    if (same && same.seq === seq && same.data.length >= data.length && (same.fin || !fin)) return true // duplicate
    this.q.splice(lo, 0, { seq, data, fin })
    this.bytes += data.length
    return true
  }

  /**
   * Takes the next segment that continues the stream at rcvNxt, trimmed of what was already
   * received; undefined when there is still a gap. Segments wholly behind rcvNxt are discarded.
   */
  take(rcvNxt: number): { data: Buffer; fin: boolean } | undefined {
    while (this.q.length > 0) {
      const p = this.q[0]
      if (seqDiff(p.seq, rcvNxt) > 0) return undefined
      this.q.shift()
      this.bytes -= p.data.length
      const skip = seqDiff(rcvNxt, p.seq)
      if (skip < p.data.length) return { data: skip > 0 ? p.data.subarray(skip) : p.data, fin: p.fin }
      if (skip === p.data.length && p.fin) return { data: p.data.subarray(p.data.length), fin: true }
    }
    return undefined
  }

  clear(): void {
    this.q.length = 0
    this.bytes = 0
  }
}
