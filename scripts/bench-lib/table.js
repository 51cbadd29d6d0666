'use strict'
/**
 * Result rows → the one table the bench prints (pure: no I/O).
 *
 * A row (runs.js, aggregated): { suite, test, rttMs, contender, label, kind: 'ours'|'competitor'|
 * 'reference', metrics: { key: median }, spread: { key: { min, max } }, okRuns, failedRuns }.
 * A suite declares its columns: { key, label, digits, better: 'higher'|'lower' } and which one
 * is `primary`: ratios compare that metric between our rows and each competitor's row of the
 * same (suite, test, rttMs) group. Ratios are always "how many times better we are":
 * ours/theirs for higher-is-better, theirs/ours for lower-is-better, so > 1 means we win.
 * A suite may name more columns in `alsoRatio` (e.g. CPU s/GB beside Gbit/s): each gets its
 * own "<label> vs <competitor>" ratio columns, oriented the same way. Ratios use medians.
 * With several runs per row (--repeat), the primary and alsoRatio columns get a "min–max"
 * column beside them, and a "runs" column says how many runs measured (e.g. 3/3); it also
 * appears whenever a run failed.
 */

/** 12345.6 → "12,346"; 0.1234 → "0.12" with digits = 2; undefined → "–". */
function formatNumber(v, digits = 0) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–'
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Ratio of our primary metric to a competitor's, oriented so that > 1 means we are better. */
function ratio(ours, theirs, better) {
  if (!(ours > 0) || !(theirs > 0)) return undefined
  return better === 'lower' ? theirs / ours : ours / theirs
}

/** The competitor names that appear in rows, in first-seen order. */
function competitorsOf(rows) {
  const out = []
  for (const r of rows) if (r.kind === 'competitor' && !out.includes(r.contender)) out.push(r.contender)
  return out
}

/**
 * Adds `ratios: { competitor: number|undefined }` (of the primary metric) to our rows, and
 * `ratiosBy: { key: { competitor: number|undefined } }` for a suite's `alsoRatio` columns
 * (new objects; input untouched).
 * @param rows result rows
 * @param primaryOf suite name → { key, better }
 * @param alsoOf suite name → [{ key, better }] (optional)
 */
function withRatios(rows, primaryOf, alsoOf = {}) {
  const groupKey = (r) => `${r.suite}\u0000${r.test}\u0000${r.rttMs}`
  return rows.map((r) => {
    if (r.kind !== 'ours') return r
    const p = primaryOf[r.suite]
    const also = alsoOf[r.suite] || []
    const ratios = {}
    const ratiosBy = {}
    for (const a of also) ratiosBy[a.key] = {}
    for (const c of competitorsOf(rows)) {
      const theirs = rows.find((o) => o.kind === 'competitor' && o.contender === c && groupKey(o) === groupKey(r))
      ratios[c] = theirs ? ratio(r.metrics[p.key], theirs.metrics[p.key], p.better) : undefined
      for (const a of also) ratiosBy[a.key][c] = theirs ? ratio(r.metrics[a.key], theirs.metrics[a.key], a.better) : undefined
    }
    return also.length ? { ...r, ratios, ratiosBy } : { ...r, ratios }
  })
}

/** Left-aligns text columns and right-aligns numbers; returns lines. */
function renderGrid(header, body, numericFrom) {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)))
  const line = (cells) =>
    cells.map((c, i) => (i >= numericFrom ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)]
}

/**
 * The table as lines of text: test, RTT, contender, then the union of the suites' columns,
 * then one "vs <competitor>" column per competitor present (our rows only), then one
 * "<label> vs <competitor>" column per `alsoRatio` column and competitor.
 * @param rows result rows (ratios added here)
 * @param suites [{ name, columns, primary, alsoRatio? }]
 */
function renderTable(rows, suites, { repeat = 1 } = {}) {
  const primaryOf = {}
  const alsoOf = {}
  const columns = []
  const alsoColumns = []
  for (const s of suites) {
    const primary = s.columns.find((c) => c.key === s.primary)
    primaryOf[s.name] = { key: primary.key, better: primary.better }
    alsoOf[s.name] = (s.alsoRatio || []).map((k) => s.columns.find((c) => c.key === k))
    for (const c of s.columns) if (!columns.some((o) => o.key === c.key)) columns.push(c)
    for (const c of alsoOf[s.name]) if (!alsoColumns.some((o) => o.key === c.key)) alsoColumns.push(c)
  }
  const rated = withRatios(rows, primaryOf, alsoOf)
  const competitors = competitorsOf(rows)
  const fmt = (x) => (x === undefined ? '' : `${x.toFixed(2)}×`)
  const spreadKeys = new Set(repeat > 1 ? suites.flatMap((s) => [s.primary, ...(s.alsoRatio || [])]) : [])
  const showRuns = repeat > 1 || rows.some((r) => r.failedRuns > 0)
  const header = [
    'test', 'RTT', 'contender', ...(showRuns ? ['runs'] : []),
    ...columns.flatMap((c) => (spreadKeys.has(c.key) ? [c.label, `${c.label} min–max`] : [c.label])),
    ...competitors.map((c) => `vs ${c}`),
    ...alsoColumns.flatMap((a) => competitors.map((c) => `${a.label} vs ${c}`)),
  ]
  const body = rated.map((r) => [
    r.test,
    `${r.rttMs} ms`,
    r.label,
    ...(showRuns ? [runsText(r)] : []),
    ...columns.flatMap((c) => {
      const med = formatNumber(r.metrics[c.key], c.digits)
      return spreadKeys.has(c.key) ? [med, spreadText(r.spread && r.spread[c.key], c.digits)] : [med]
    }),
    ...competitors.map((c) => fmt(r.ratios && r.ratios[c])),
    ...alsoColumns.flatMap((a) => competitors.map((c) => fmt(r.ratiosBy && r.ratiosBy[a.key] && r.ratiosBy[a.key][c]))),
  ])
  return { lines: renderGrid(header, body, 3), rows: rated }
}

/** "2/3": runs that measured, of all (a row without run counts, e.g. built by hand: ""). */
function runsText(r) {
  if (r.okRuns === undefined) return ''
  return `${r.okRuns}/${r.okRuns + (r.failedRuns || 0)}`
}

/** { min, max } → "0.79–0.83" (undefined → "–"). */
function spreadText(s, digits) {
  if (!s) return '–'
  return `${formatNumber(s.min, digits)}–${formatNumber(s.max, digits)}`
}

module.exports = { formatNumber, ratio, withRatios, renderTable, spreadText }
