/**
 * Property-based fuzzing of ByteReader (src/router/byte-reader.ts), the pull reader under the
 * HTTP proxy: whatever the chunking, and whatever is put back with unshift(), the bytes read
 * are exactly the bytes written, in order; detach() hands every unread byte back to the stream.
 */
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ByteReader } from '../../src/router/byte-reader'
import { splitAt } from './fuzz-streams'

describe('ByteReader under fuzzing', () => {
  it('reads back exactly what was written, with random put-backs, then null at the end', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 10 }), async (bytes, cuts, keeps) => {
        const s = new PassThrough()
        const r = new ByteReader(s)
        for (const c of splitAt(Buffer.from(bytes), cuts)) s.write(c)
        s.end()
        const got: Buffer[] = []
        let i = 0
        for (;;) {
          const c = await r.read()
          if (c === null) break
          // Consume only part of some chunks and put the rest back, like readHead() does.
          const k = keeps[i++ % Math.max(1, keeps.length)] ?? c.length
          const used = c.subarray(0, Math.max(1, k % (c.length + 1)))
          got.push(used)
          r.unshift(c.subarray(used.length))
        }
        expect(Buffer.concat(got).toString('hex')).toBe(Buffer.from(bytes).toString('hex'))
        expect(await r.read()).toBeNull()
      }),
      { numRuns: 500 },
    )
  })

  it('detach() gives every unread byte back to the stream, in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.array(fc.nat(), { maxLength: 8 }), fc.nat(5), async (bytes, cuts, reads) => {
        const s = new PassThrough()
        const r = new ByteReader(s)
        for (const c of splitAt(Buffer.from(bytes), cuts)) s.write(c)
        s.end()
        const got: Buffer[] = []
        for (let i = 0; i < reads; i++) {
          const c = await r.read()
          if (c === null) break
          got.push(c)
        }
        r.detach()
        const rest: Buffer[] = []
        // Already ended when the reader saw the end (read() returned null): nothing is left.
        if (!s.readableEnded) {
          s.on('data', (d: Buffer) => rest.push(d))
          await new Promise((res) => s.once('end', res).resume())
        }
        expect(Buffer.concat([...got, ...rest]).toString('hex')).toBe(Buffer.from(bytes).toString('hex'))
      }),
      { numRuns: 300 },
    )
  })

  it('a stream error rejects the pending read instead of hanging', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 50 }), async (bytes) => {
        const s = new PassThrough()
        const r = new ByteReader(s)
        if (bytes.length > 0) s.write(Buffer.from(bytes))
        const chunks: Buffer[] = []
        if (bytes.length > 0) chunks.push((await r.read())!)
        const pending = r.read()
        s.destroy(new Error('boom'))
        await expect(pending).rejects.toThrow('boom')
        expect(Buffer.concat(chunks).length).toBe(bytes.length)
      }),
      { numRuns: 100 },
    )
  })
})
