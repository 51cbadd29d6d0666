'use strict'
/**
 * Result rows → the one table the bench prints (pure: no I/O).
 *
 * A row: { suite, test, rttMs, contender, label, kind: 'ours'|'competitor'|'reference',
 *          metrics: { key: number|undefined } }.
 * A suite declares its columns: { key, label, digits, better: 'higher'|'lower' } and which one
 * is `primary`: ratios compare that metric between our rows and each competitor's row of the
 * same (suite, test, rttMs) group. Ratios are always "how many times better we are":
 * ours/theirs for higher-is-better, theirs/ours for lower-is-better, so > 1 means we win.
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
 * Adds `ratios: { competitor: number|undefined }` to our rows (new objects; input untouched).
 * @param rows result rows
 * @param primaryOf suite name → { key, better }
 */
function withRatios(rows, primaryOf) {
  const groupKey = (r) => `${r.suite}\u0000${r.test}\u0000${r.rttMs}`
  return rows.map((r) => {
    if (r.kind !== 'ours') return r
    const p = primaryOf[r.suite]
    const ratios = {}
    for (const c of competitorsOf(rows)) {
      const theirs = rows.find((o) => o.kind === 'competitor' && o.contender === c && groupKey(o) === groupKey(r))
      ratios[c] = theirs ? ratio(r.metrics[p.key], theirs.metrics[p.key], p.better) : undefined
    }
    return { ...r, ratios }
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
 * then one "vs <competitor>" column per competitor present (our rows only).
 * @param rows result rows (ratios added here)
 * @param suites [{ name, columns, primary }]
 */
function renderTable(rows, suites) {
  const primaryOf = {}
  const columns = []
  for (const s of suites) {
    const primary = s.columns.find((c) => c.key === s.primary)
    primaryOf[s.name] = { key: primary.key, better: primary.better }
    for (const c of s.columns) if (!columns.some((o) => o.key === c.key)) columns.push(c)
  }
  const rated = withRatios(rows, primaryOf)
  const competitors = competitorsOf(rows)
  const header = ['test', 'RTT', 'contender', ...columns.map((c) => c.label), ...competitors.map((c) => `vs ${c}`)]
  const body = rated.map((r) => [
    r.test,
    `${r.rttMs} ms`,
    r.label,
    ...columns.map((c) => formatNumber(r.metrics[c.key], c.digits)),
    ...competitors.map((c) => {
      const x = r.ratios && r.ratios[c]
      return x === undefined ? '' : `${x.toFixed(2)}×`
    }),
  ])
  return { lines: renderGrid(header, body, 3), rows: rated }
}

module.exports = { formatNumber, ratio, withRatios, renderTable }
