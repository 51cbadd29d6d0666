import type { Readable, Writable } from 'node:stream'

/**
 * Pull-style reading of a stream, one chunk at a time, for protocol code that parses
 * sequential messages (the HTTP proxy). The stream is paused whenever a chunk is waiting, so
 * a slow consumer pushes back on the sender through TCP (or the SSH channel window).
 */
export class ByteReader {
  private readonly chunks: Buffer[] = []
  private ended = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private readonly onData = (d: Buffer): void => {
    this.chunks.push(d)
    this.stream.pause()
    this.notify()
  }
  private readonly onEnd = (): void => {
    this.ended = true
    this.notify()
  }
  private readonly onError = (e: Error): void => {
    this.failure ??= e
    this.notify()
  }

  constructor(private readonly stream: Readable) {
    stream.on('data', this.onData)
    stream.on('end', this.onEnd)
    stream.on('close', this.onEnd)
    stream.on('error', this.onError)
    stream.pause()
  }

  /** The next chunk; null at end of stream; rejects with the stream's error. */
  async read(): Promise<Buffer | null> {
    for (;;) {
      const c = this.chunks.shift()
      if (c) return c
      if (this.failure) throw this.failure
      if (this.ended) return null
      await new Promise<void>((resolve) => {
        this.wake = resolve
        this.stream.resume()
      })
    }
  }

  /** Puts bytes back to be returned first by the next read(). */
  unshift(b: Buffer): void {
    if (b.length > 0) this.chunks.unshift(b)
  }

  /**
   * Stops reading and gives the stream back with every buffered byte returned to it, so a
   * pipe set up afterwards sees them first (CONNECT and protocol upgrades switch to raw
   * piping this way). The stream is left paused.
   */
  detach(): void {
    this.stream.off('data', this.onData)
    this.stream.off('end', this.onEnd)
    this.stream.off('close', this.onEnd)
    this.stream.off('error', this.onError)
    this.stream.pause()
    const rest = Buffer.concat(this.chunks.splice(0))
    if (rest.length > 0 && !this.stream.destroyed) this.stream.unshift(rest)
  }

  private notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }
}

/** Writes with backpressure: resolves when the stream accepts more, rejects if it closes first. */
export function writeAll(w: Writable, b: Buffer): Promise<void> {
  if (w.destroyed || w.writableEnded) return Promise.reject(new Error('stream closed'))
  if (w.write(b)) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      w.off('drain', onDrain)
      w.off('close', onClose)
      w.off('error', onClose)
      if (err) reject(err)
      else resolve()
    }
    const onDrain = (): void => done()
    const onClose = (e?: Error): void => done(e instanceof Error ? e : new Error('stream closed'))
    w.on('drain', onDrain)
    w.on('close', onClose)
    w.on('error', onClose)
  })
}
