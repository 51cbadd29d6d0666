/**
 * Journal entries written by an earlier release must still revert. The fixtures are entries
 * exactly as release 0.1.0's helper wrote them (HelperServer.apply with a fake executor: nat
 * with gateway interfaces and sources, owner and DNS guard; plain nat; nft; tun; pf with its
 * enable token), and their `revert` field is what that release's cleanup ran for them (checked
 * when they were recorded). Cleanup today must run exactly the same argv and forget the entry.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { cleanupStale } from '../../../src/platform/helper/cleanup'
import { Journal, type JournalEntry } from '../../../src/platform/helper/journal'
import { FakeExecutor } from '../../fakes/fake-executor'

const FIXTURES = path.join(__dirname, 'fixtures', 'journal-0.1.0')
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

describe('journal entries of release 0.1.0', () => {
  const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort()

  it('the fixtures cover every method', () => {
    const methods = new Set(files.map((f) => (JSON.parse(fs.readFileSync(path.join(FIXTURES, f), 'utf8')) as JournalEntry).method))
    expect([...methods].sort()).toEqual(['nat', 'nft', 'pf', 'tun'])
  })

  for (const file of files) {
    it(`${file}: cleanup of a dead instance runs the revert that release computed, then forgets it`, async () => {
      const text = fs.readFileSync(path.join(FIXTURES, file), 'utf8')
      const entry = JSON.parse(text) as JournalEntry
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-jcompat-'))
      dirs.push(dir)
      fs.writeFileSync(path.join(dir, `${entry.id}.json`), text, { mode: 0o600 })
      const journal = new Journal(dir)
      const x = new FakeExecutor()
      const report = await cleanupStale(x, { journal, netns: entry.netns, isAlive: () => false, scanKernel: false })
      expect(x.calls).toEqual(entry.revert)
      expect(report).toEqual({ removed: [`instance ${entry.id} (${entry.method})`], kept: 0, warnings: [] })
      expect(journal.list()).toEqual([])
    })
  }
})
