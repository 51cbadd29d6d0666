import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { spread, summarize, RunBook } = require('../../scripts/bench-lib/runs.js')
const { median } = require('../../scripts/bench-lib/perf-parse.js')

const id = (contender: string, extra: Record<string, unknown> = {}) => ({
  suite: 'bulk', test: 'bulk upload', rttMs: 0, kind: contender === 'ssh -L' ? 'competitor' : 'ours', contender, label: contender, ...extra,
})

describe('median and spread', () => {
  it('median: the middle value, the mean of the middle two, ignoring undefined', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([undefined, 5, Number.NaN])).toBe(5)
    expect(median([])).toBeUndefined()
  })

  it('spread: min and max of the numbers, undefined for none', () => {
    expect(spread([0.8, 0.79, 0.83])).toEqual({ min: 0.79, max: 0.83 })
    expect(spread([7])).toEqual({ min: 7, max: 7 })
    expect(spread([undefined])).toBeUndefined()
  })
})

describe('summarize', () => {
  it('medians and spreads per metric, over the runs that measured', () => {
    const s = summarize([
      { round: 1, metrics: { gbps: 3, cpu: 1.5 } },
      { round: 2, error: 'start: exited (code 255)' },
      { round: 3, metrics: { gbps: 1, cpu: undefined } },
      { round: 4, metrics: { gbps: 2, cpu: 1.7 } },
    ])
    expect(s.metrics).toEqual({ gbps: 2, cpu: 1.6 })
    expect(s.spread).toEqual({ gbps: { min: 1, max: 3 }, cpu: { min: 1.5, max: 1.7 } })
    expect(s.okRuns).toBe(3)
    expect(s.failedRuns).toBe(1)
  })

  it('a row whose every run failed has no metrics', () => {
    const s = summarize([{ round: 1, error: 'x' }])
    expect(s.metrics).toEqual({})
    expect(s.okRuns).toBe(0)
  })
})

describe('RunBook', () => {
  it('keeps rows in first-seen order with every raw run, and aggregates them', () => {
    const b = new RunBook()
    b.record(id('subnet-tunnel nat/builtin', { row: 'nat/builtin', method: 'nat', engine: 'builtin' }), 1, { gbps: 4 })
    b.record(id('ssh -L'), 1, { gbps: 5 })
    b.record(id('subnet-tunnel nat/builtin', { row: 'nat/builtin', method: 'nat', engine: 'builtin' }), 2, { gbps: 2 })
    b.record(id('ssh -L'), 2, { gbps: 6 }, { detail: { x: 1 } })
    b.record(id('subnet-tunnel nat/builtin', { row: 'nat/builtin', method: 'nat', engine: 'builtin' }), 3, { gbps: 3 })
    const rows = b.rows()
    expect(rows.map((r: { contender: string }) => r.contender)).toEqual(['subnet-tunnel nat/builtin', 'ssh -L'])
    expect(rows[0].metrics.gbps).toBe(3)
    expect(rows[0].spread.gbps).toEqual({ min: 2, max: 4 })
    expect(rows[0].runs.map((r: { metrics: { gbps: number } }) => r.metrics.gbps)).toEqual([4, 2, 3])
    expect(rows[0].row).toBe('nat/builtin')
    expect(rows[1].runs[1]).toEqual({ round: 2, metrics: { gbps: 6 }, detail: { x: 1 } })
    expect(b.rows('dns')).toEqual([])
  })

  it('failMissing fails only the rows without a run in that round', () => {
    const b = new RunBook()
    const up = id('ssh -L')
    const down = id('ssh -L', { test: 'bulk download' })
    b.record(up, 1, { gbps: 5 })
    b.failMissing([up, down], 1, 'measure: ssh -L exited', 'stack…')
    const [u, d] = b.rows()
    expect(u.runs).toEqual([{ round: 1, metrics: { gbps: 5 } }])
    expect(d.runs).toEqual([{ round: 1, error: 'measure: ssh -L exited', detail: 'stack…' }])
    expect(d.errors).toEqual(['measure: ssh -L exited'])
    expect(d.okRuns).toBe(0)
    expect(d.failedRuns).toBe(1)
  })

  it('rows differing only by variant (DNS cache on / off) stay apart', () => {
    const b = new RunBook()
    b.record(id('subnet-tunnel nat/builtin', { variant: 'cache' }), 1, { qps: 30000 })
    b.record(id('subnet-tunnel nat/builtin', { variant: 'no-cache' }), 1, { qps: 10000 })
    expect(b.rows().map((r: { variant: string }) => r.variant)).toEqual(['cache', 'no-cache'])
  })
})
