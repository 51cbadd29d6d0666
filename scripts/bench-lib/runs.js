'use strict'
/**
 * Repeated measurements (pure: no I/O). With `--repeat N` every row is measured N times — in
 * rounds, each round running every contender once, so drift on a shared machine (another
 * tenant's build, thermal limits) hits all contenders alike — and reported as the median of
 * its runs with their spread (min–max). Targets and ratios use the medians.
 *
 * A row's identity: { suite, test, rttMs, kind, contender, label, row?, variant?, method?, engine? }
 * (row: our METHOD/ENGINE name, ours.js).
 * A run: { round, metrics } when it measured, { round, error, detail? } when it failed; a
 * failed run does not stop the others, and a row whose every run failed reports why.
 */
const { median } = require('./perf-parse')

/** { min, max } of the numbers in values (undefined when there is none). */
function spread(values) {
  const v = values.filter((x) => typeof x === 'number' && !Number.isNaN(x))
  if (v.length === 0) return undefined
  return { min: Math.min(...v), max: Math.max(...v) }
}

/**
 * Runs → { metrics: key → median, spread: key → { min, max }, okRuns, failedRuns }, over the
 * runs that measured (a metric a run left undefined does not count for that metric).
 */
function summarize(runs) {
  const ok = runs.filter((r) => !r.error && r.metrics)
  const keys = [...new Set(ok.flatMap((r) => Object.keys(r.metrics)))]
  const metrics = {}
  const spreads = {}
  for (const k of keys) {
    const values = ok.map((r) => r.metrics[k])
    metrics[k] = median(values)
    const s = spread(values)
    if (s) spreads[k] = s
  }
  return { metrics, spread: spreads, okRuns: ok.length, failedRuns: runs.length - ok.length }
}

const ID_FIELDS = ['suite', 'test', 'rttMs', 'kind', 'contender', 'label', 'row', 'variant', 'method', 'engine']

/** The row's identity fields only (undefined ones dropped). */
function rowId(id) {
  const out = {}
  for (const f of ID_FIELDS) if (id[f] !== undefined) out[f] = id[f]
  return out
}

const keyOf = (id) => JSON.stringify([id.suite, id.test, id.rttMs, id.contender, id.variant, id.label])

/**
 * Collects every run of every row, in the order rows first appear; rows() aggregates them.
 * A suite that fails half-way keeps what it recorded.
 */
class RunBook {
  constructor() {
    this.byKey = new Map()
  }

  entry(id) {
    const k = keyOf(id)
    if (!this.byKey.has(k)) this.byKey.set(k, { id: rowId(id), runs: [] })
    return this.byKey.get(k)
  }

  /** A measured run of row `id` in `round` (metrics: key → number|undefined). */
  record(id, round, metrics, extra = {}) {
    this.entry(id).runs.push({ round, metrics, ...extra })
  }

  /** A failed run of row `id` in `round`, with the reason (one line) and optional detail. */
  fail(id, round, error, detail) {
    this.entry(id).runs.push(detail ? { round, error, detail } : { round, error })
  }

  /** Marks `round` failed for each of `ids` that has no run in that round yet. */
  failMissing(ids, round, error, detail) {
    for (const id of ids) {
      const e = this.entry(id)
      if (!e.runs.some((r) => r.round === round)) this.fail(id, round, error, detail)
    }
  }

  /** Rows of `suite` (all when undefined), aggregated: identity, medians, spreads, runs. */
  rows(suite) {
    const out = []
    for (const { id, runs } of this.byKey.values()) {
      if (suite !== undefined && id.suite !== suite) continue
      const s = summarize(runs)
      const errors = [...new Set(runs.filter((r) => r.error).map((r) => r.error))]
      out.push({ ...id, metrics: s.metrics, spread: s.spread, okRuns: s.okRuns, failedRuns: s.failedRuns, errors, runs })
    }
    return out
  }
}

module.exports = { spread, summarize, rowId, RunBook }
