/**
 * Property-based fuzzing of the privileged helper's request handling, in-process: bytes go
 * through the same LineSplitter → HelperServer.handleLine path as helper-main.ts, with a fake
 * executor instead of iptables/nft. Whatever arrives — random lines, overlong lines, partial
 * lines, valid requests mixed in — every complete line gets exactly one response, bad ones an
 * error reply with code HELPER, nothing throws or rejects, and the server stays usable: its
 * applied state and journal stay consistent with the requests that succeeded.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FakeExecutor } from '../../fakes/fake-executor'
import { HelperServer } from '../../../src/platform/helper/helper-server'
import { Journal } from '../../../src/platform/helper/journal'
import { MAX_LINE, type HelperResponse } from '../../../src/platform/helper/protocol'
import { LineSplitter } from '../../../src/platform/helper/protocol-wire'
import { anyText, tokenText } from '../../fuzz-helpers'

let root: string
let n = 0
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'st-helper-fuzz-'))
})
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

function newServer(exec = new FakeExecutor()): { server: HelperServer; journal: Journal } {
  const dir = path.join(root, `j${n++}`)
  fs.mkdirSync(dir)
  const journal = new Journal(dir)
  return { server: new HelperServer({ exec, journal, netns: 1, pid: process.pid, mainPid: 1, isAlive: () => true }), journal }
}

/** Feeds chunks through a LineSplitter like helper-main.ts; resolves with every reply in order. */
async function drive(server: HelperServer, chunks: string[], max = MAX_LINE): Promise<HelperResponse[]> {
  const pending: Promise<HelperResponse>[] = []
  const splitter = new LineSplitter(
    (line) => pending.push(server.handleLine(line)),
    () => pending.push(Promise.resolve({ id: null, ok: false, error: { code: 'HELPER', message: 'bad request: line too long' } })),
    max,
  )
  for (const c of chunks) splitter.push(c)
  return Promise.all(pending)
}

const spec = fc.record({
  instanceId: fc.stringMatching(/^[a-z0-9]{1,16}$/),
  listenPort: fc.integer({ min: 1, max: 65535 }),
  include: fc.constant(['10.0.0.0/8']),
  exclude: fc.constant([] as string[]),
})
const goodLine = fc.oneof(
  fc.record({ id: fc.nat(1000), op: fc.constant('apply'), method: fc.constantFrom('nat', 'nft'), spec }),
  fc.record({ id: fc.nat(1000), op: fc.constantFrom('revert', 'cleanup') }),
  fc.record({ id: fc.nat(1000), op: fc.constant('probe'), method: fc.constantFrom('nat', 'nft') }),
).map((o) => JSON.stringify(o))
const badLine = fc.oneof(
  anyText.map((s) => s.replace(/\n/g, ' ')),
  fc.json().map((s) => s.replace(/\n/g, ' ')),
  tokenText(['{', '}', '"id":1', '"op":"apply"', '"op":"revert"', ',', '"spec":{}', '"method":"nft"', '\r', '\t', '\0', 'null']),
)
const line = fc.oneof({ weight: 2, arbitrary: goodLine }, { weight: 3, arbitrary: badLine })

function splitText(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
  return [...points, text.length].map((p, i, all) => text.slice(i === 0 ? 0 : all[i - 1], p))
}

describe('helper server under fuzzing', () => {
  it('random request streams in random chunks: one reply per line, typed errors, consistent state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 8 }), fc.option(fc.nat(10), { nil: undefined }), async (lines, cuts, failAt) => {
        const exec = new FakeExecutor()
        if (failAt !== undefined) exec.failAt(failAt)
        const { server, journal } = newServer(exec)
        const replies = await drive(server, splitText(lines.join('\n') + '\n', cuts))
        expect(replies.length).toBe(lines.filter((l) => l.trim() !== '').length)
        for (const r of replies) {
          if (r.ok) continue
          expect(r.error.message).toBeTypeOf('string')
          expect(['HELPER', 'FW_APPLY', 'FW_UNSUPPORTED']).toContain(r.error.code)
        }
        // The journal holds exactly the applied instance (or nothing).
        expect(journal.list().length).toBe(server.isApplied ? 1 : 0)
        // Still usable: a revert always succeeds with the fake executor.
        const last = await server.handleLine('{"id":99999,"op":"revert"}')
        if (last.ok) {
          expect(server.isApplied).toBe(false)
          expect(journal.list()).toEqual([])
        } else {
          // Only a failing rule command (the scripted failure) may stop a revert; state is kept for a retry.
          expect(last.error.code).toBe('FW_APPLY')
          expect(server.isApplied).toBe(true)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('bad lines get an error reply that echoes the id when one was readable', async () => {
    const { server } = newServer()
    await fc.assert(
      fc.asyncProperty(badLine, async (l) => {
        const r = await server.handleLine(l)
        if (r.ok) return // some random JSON is a valid probe/revert/cleanup
        expect(r.error.code).toBe('HELPER')
        expect(r.id === null || Number.isSafeInteger(r.id)).toBe(true)
      }),
      { numRuns: 800 },
    )
    expect(server.isApplied).toBe(false)
  })

  it('overlong and partial lines: reported once, never handled, and the next line works', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3000 }), fc.array(fc.nat(), { maxLength: 6 }), fc.string({ maxLength: 40 }), async (extra, cuts, partial) => {
        const { server } = newServer()
        const long = '{"id":1,"op":"revert","x":"' + 'a'.repeat(MAX_LINE + extra) + '"}'
        const text = `${long}\n{"id":2,"op":"revert"}\n${partial.replace(/\n/g, '')}`
        const replies = await drive(server, splitText(text, cuts.map((c) => c % 4096).concat(cuts.map((c) => long.length - (c % 4096)))))
        expect(replies).toEqual([
          { id: null, ok: false, error: { code: 'HELPER', message: 'bad request: line too long' } },
          { id: 2, ok: true, result: { reverted: false } },
        ])
      }),
      { numRuns: 30 },
    )
  })
})
