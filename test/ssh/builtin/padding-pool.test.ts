import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { pooledRandomFill } from '../../../src/ssh/builtin/padding-pool'

/** A deterministic stand-in for randomFillSync: byte i of the stream is i & 0xff (never repeats within 256). */
function countingFill(): { fill: (b: Uint8Array) => void; calls: number } {
  let next = 0
  const f = {
    calls: 0,
    fill: (b: Uint8Array) => {
      f.calls++
      for (let i = 0; i < b.length; i++) b[i] = next++ & 0xff
    },
  }
  return f
}

describe('pooledRandomFill', () => {
  it('fills exactly [offset, offset+size) with the next unused bytes of the pool, nothing else', () => {
    const src = countingFill()
    const fill = pooledRandomFill(src.fill)
    const a = Buffer.alloc(32, 0xee)
    expect(fill(a, 5, 12)).toBe(a)
    expect([...a.subarray(5, 17)]).toEqual([...Array(12).keys()])
    expect(a.subarray(0, 5).every((x) => x === 0xee) && a.subarray(17).every((x) => x === 0xee)).toBe(true)
    // The next call continues the stream: no byte is handed out twice.
    const b = Buffer.alloc(4)
    fill(b)
    expect([...b]).toEqual([12, 13, 14, 15])
    expect(fill.stats()).toEqual({ pooled: 2, refills: 1, direct: 0 })
  })

  it('refills when the pool runs out, and every byte served is consumed in order', () => {
    const src = countingFill()
    const fill = pooledRandomFill(src.fill)
    const seen: number[] = []
    // 8 KiB pool, 19-byte paddings (aes-gcm's largest): the 432nd request needs a refill.
    for (let i = 0; i < 1000; i++) {
      const p = Buffer.alloc(19)
      fill(p, 0, 19)
      seen.push(...p)
    }
    expect(src.calls).toBe(3)
    expect(fill.stats()).toMatchObject({ pooled: 1000, refills: 3 })
    // Within one pool the stream is consecutive; the tail of a pool too short for a request is skipped, never reused.
    const firstPool = seen.slice(0, 431 * 19)
    expect(firstPool.every((x, i) => x === (i & 0xff))).toBe(true)
    expect(seen[431 * 19]).toBe(8192 & 0xff)
  })

  it('large, out-of-range and non-byte requests go to randomFillSync itself (same results, same errors)', () => {
    const src = countingFill()
    const fill = pooledRandomFill(src.fill)
    const big = Buffer.alloc(4096)
    fill(big)
    expect(big.some((x) => x !== 0)).toBe(true) // real random bytes, not the counting stream's
    expect(() => fill(Buffer.alloc(8), 6, 4)).toThrow(RangeError)
    expect(() => fill(Buffer.alloc(8), -1, 2)).toThrow(RangeError)
    const words = new Uint32Array(4)
    fill(words)
    expect(fill.stats()).toEqual({ pooled: 0, refills: 0, direct: 4 })
    expect(src.calls).toBe(0)
  })
})

describe('ssh2 loaded through src/ssh/builtin/ssh2-compat (built dist, fresh process)', () => {
  const dist = path.resolve(__dirname, '../../../dist/ssh/builtin/ssh2-compat.js')
  const cliMain = path.resolve(__dirname, '../../../dist/cli/main.js')
  it("with the CLI's modules loaded first, ssh2 pads its packets from the pool; node:crypto's own randomFillSync is untouched", () => {
    expect(fs.existsSync(dist), 'run `npm run build` first').toBe(true)
    const script = `
      const crypto = require('node:crypto')
      const before = crypto.randomFillSync
      // The CLI's whole module graph first, as bin/ does: nothing in it may load ssh2 unpatched.
      require(${JSON.stringify(cliMain)})
      const { Client, utils, paddingPoolStats } = require(${JSON.stringify(dist)})
      const { Server } = require('ssh2')
      const hostKey = utils.generateKeyPairSync('ecdsa', { bits: 256 }).private
      const srv = new Server({ hostKeys: [hostKey] }, (c) => {
        c.on('authentication', (ctx) => (ctx.method === 'password' && ctx.password === 'pw' ? ctx.accept() : ctx.reject(['password'])))
        c.on('ready', () => c.on('session', (accept) => accept().on('exec', (acc) => { const s = acc(); s.write('hi'); s.exit(0); s.end() })))
      })
      srv.listen(0, '127.0.0.1', () => {
        const cl = new Client()
        cl.on('ready', () => cl.exec('x', (err, s) => {
          if (err) throw err
          s.resume()
          s.on('close', () => {
            cl.end(); srv.close()
            console.log(JSON.stringify({ same: crypto.randomFillSync === before, stats: paddingPoolStats() }))
          })
        }))
        cl.connect({ host: '127.0.0.1', port: srv.address().port, username: 'u', password: 'pw', hostVerifier: () => true })
      })
    `
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 }).trim()) as {
      same: boolean
      stats: { pooled: number; refills: number; direct: number }
    }
    expect(out.same).toBe(true)
    // Client and server both pad every packet (KEXINIT cookies too) from the pool.
    expect(out.stats.pooled).toBeGreaterThan(10)
    expect(out.stats.refills).toBeGreaterThanOrEqual(1)
  })
})
