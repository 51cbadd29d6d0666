/**
 * Fuzzing the control socket's request handling (src/status/control-server.ts) over a real Unix
 * socket: whatever a client sends — random bytes, random JSON, overlong lines, a request split
 * over several writes, or nothing before closing — it gets exactly one JSON line back (an error
 * unless it asked for status) and the server keeps serving the next client.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ControlServer, MAX_REQUEST_BYTES } from '../../src/status/control-server'
import { memoryLogger } from '../../src/observe/logger'
import type { StatusSnapshot } from '../../src/status/status-types'

let dir: string
let server: ControlServer
let snapshots = 0

const snapshot = (): StatusSnapshot => {
  snapshots++
  return {
    pid: process.pid, version: '0', instanceId: 'fuzz', startedAt: '2024-01-01T00:00:00.000Z', uptimeS: 1, remotes: [], subnets: [], excludes: [],
    proxies: [], forwards: [], totals: { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 }, connections: [],
  }
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-ctl-fuzz-'))
  server = new ControlServer({ dir: path.join(dir, 'c'), instanceId: 'fuzz', snapshot, log: memoryLogger() })
  await server.start()
})
afterAll(async () => {
  await server.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** Writes the chunks one at a time, half-closes, and returns everything answered before close. */
function exchange(chunks: Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: server.path, allowHalfOpen: true })
    let out = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => (out += d))
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve(out) : reject(e)))
    s.on('end', () => s.end())
    s.on('close', () => resolve(out))
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed || s.writableEnded) break
        s.write(c)
        await new Promise((r) => setImmediate(r))
      }
      if (!s.writableEnded) s.end()
    })
  })
}

const request = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc.json().map((j) => Buffer.from(j)),
  fc.jsonValue().map((v) => Buffer.from(`${JSON.stringify({ op: v })}\n`)),
  fc.constantFrom('{"op":"status"}\n', '{"op":"status"}', '{"op":"status"', '\n', '', '{"op":"Status"}\n', '{"op":"status"}\n{"op":"status"}\n').map((s) => Buffer.from(s)),
  fc.integer({ min: MAX_REQUEST_BYTES - 2, max: MAX_REQUEST_BYTES + 50 }).map((n) => Buffer.from('x'.repeat(n) + (n % 2 ? '\n' : ''))),
)

describe('ControlServer under fuzzing', () => {
  it('every client gets exactly one JSON line, and the server keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(request, fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
        const chunks = [...points, bytes.length].map((p, i, all) => bytes.subarray(i === 0 ? 0 : all[i - 1], p))
        const before = snapshots
        const out = await exchange(chunks)
        expect(out.endsWith('\n')).toBe(true)
        expect(out.indexOf('\n')).toBe(out.length - 1)
        const reply = JSON.parse(out) as { ok: boolean; error?: string }
        // Status is served only for a request that is (up to its first newline) {"op":"status"}.
        const firstLine = bytes.toString('utf8').split('\n')[0]!
        let asked = false
        try {
          asked = (JSON.parse(firstLine) as { op?: unknown } | null)?.op === 'status'
        } catch {
          /* not JSON */
        }
        expect(reply.ok).toBe(asked && Buffer.byteLength(firstLine) <= MAX_REQUEST_BYTES)
        expect(snapshots - before).toBe(reply.ok ? 1 : 0)
        if (!reply.ok) expect(reply.error).toBeTypeOf('string')
      }),
      { numRuns: 250 },
    )
    const last = JSON.parse(await exchange([Buffer.from('{"op":"status"}\n')]))
    expect(last).toMatchObject({ ok: true, status: { instanceId: 'fuzz' } })
  })
})
