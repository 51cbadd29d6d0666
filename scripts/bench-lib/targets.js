'use strict'
/**
 * Every target the bench judges, as data, and the judge (pure: no I/O). Targets are judged on
 * aggregated rows (runs.js), i.e. on the median of a row's runs, never on its best run.
 *
 * A target names the row of ours it judges by `row` ("METHOD/ENGINE", see ours.js rowName):
 *  - README_ROW carries the README's targets (issues 5 and 18). Today that is the builtin
 *    engine with --method nat, the redirect sshuttle uses too. To judge them on another row
 *    (e.g. once the OpenSSH engine is the default), change that one line.
 *  - OPENSSH_ROW carries issue 18's per-engine targets for the OpenSSH engine. They print once
 *    such rows exist (a CLI with --ssh-engine, and --engines including openssh).
 *
 * Kinds: `ratio` (our median vs a competitor's median of the same suite, test, RTT: oriented
 * so that > 1 means we are better, like the table), `max` / `min` (an absolute bound, `strict`
 * for < / >).
 */

/** The row the README's targets are judged on. */
const README_ROW = 'nat/builtin'
/** The row the OpenSSH engine's targets (issue 18, per engine) are judged on. */
const OPENSSH_ROW = 'nat/openssh'

const N = (n) => n.toLocaleString('en-US')

/**
 * The targets for a run with these RTTs. Each: { what, row, suite, test, rttMs, variant?,
 * metric, better?, kind, vs?, min?, max?, strict?, unit?, digits? }.
 */
function targetsFor({ rtts = [0, 40] } = {}) {
  const t = []
  const bulk = (row, test, rttMs, vs, min) =>
    t.push({ what: `${test}, RTT ${rttMs === 0 ? '0' : `${rttMs} ms`}: ≥ ${min}× ${vs}`, row, suite: 'bulk', test, rttMs, metric: 'gbps', better: 'higher', kind: 'ratio', vs, min })
  const connrate = (row, vs, min) =>
    t.push({ what: `new connections/s at RTT 0: ≥ ${min}× ${vs}`, row, suite: 'connrate', test: 'new conns (Connection: close)', rttMs: 0, metric: 'connPerS', better: 'higher', kind: 'ratio', vs, min })
  const startup = (row) =>
    t.push({ what: 'start to first successful request ≤ 0.5 s at RTT 0', row, suite: 'startup', test: 'start → first GET', rttMs: 0, metric: 'startS', kind: 'max', max: 0.5, unit: ' s', digits: 3 })

  // Issue 18, for each engine's row (README_ROW: builtin, OPENSSH_ROW: openssh) against ssh -L
  // on the same cipher: bulk at RTT 0 ≥ 0.9× both ways, download at 40 ms ≥ 3×, upload at 40 ms
  // ≥ 0.95×, start-up ≤ 0.5 s, connections/s ≥ 1.0×. (Issue 13 asked 0.95× at RTT 0 of the
  // openssh engine; issue 18 set one bar for both.)
  for (const row of [README_ROW, OPENSSH_ROW]) {
    for (const test of ['bulk upload', 'bulk download']) bulk(row, test, 0, 'ssh -L', 0.9)
    bulk(row, 'bulk download', 40, 'ssh -L', 3)
    bulk(row, 'bulk upload', 40, 'ssh -L', 0.95)
    startup(row)
    connrate(row, 'ssh -L', 1.0)
  }
  // README (issue 5), on README_ROW: against sshuttle.
  for (const test of ['bulk upload', 'bulk download']) bulk(README_ROW, test, 0, 'sshuttle', 10)
  connrate(README_ROW, 'sshuttle', 1.5)
  const ttfbRtt = Math.max(...rtts)
  t.push({
    what: `time to first byte at RTT ${ttfbRtt} ms ≤ 2 RTT + 5 ms (${2 * ttfbRtt + 5} ms)`, row: README_ROW, suite: 'ttfb', test: 'time to first byte, fresh conn',
    rttMs: ttfbRtt, metric: 'ttfbMs', kind: 'max', max: 2 * ttfbRtt + 5, unit: ' ms', digits: 1,
  })
  for (const [n, mb] of [[1000, 120], [10000, 300]]) {
    const base = { row: README_ROW, suite: 'memory', test: `${N(n)} idle conns held`, rttMs: 0 }
    const what = `${N(n)} concurrent connections`
    t.push({ ...base, what: `${what}: all held`, metric: 'held', kind: 'min', min: n, unit: ` of ${N(n)}`, digits: 0 })
    for (const [metric, whose] of [['rssMB', 'RSS < %d MB (process tree)'], ['mainRssMB', 'RSS < %d MB (main process)'], ['pssMB', 'PSS < %d MB (process tree, shared pages once)']]) {
      t.push({ ...base, what: `${what}: ${whose.replace('%d', mb)}`, metric, kind: 'max', max: mb, strict: true, unit: ' MB', digits: 1 })
    }
  }
  for (const rttMs of rtts) {
    const min = rttMs > 0 ? 10 : 2
    for (const [variant, what] of [['cache', 'default (cache)'], ['no-cache', '--no-dns-cache']]) {
      t.push({ what: `RTT ${rttMs} ms: DNS q/s ≥ ${min}× sshuttle, ${what}`, row: README_ROW, suite: 'dns', test: 'dns', rttMs, variant, metric: 'qps', better: 'higher', kind: 'ratio', vs: 'sshuttle', min })
    }
    t.push({ what: `RTT ${rttMs} ms: cached DNS answer < 1 ms (avg @1000 q/s)`, row: README_ROW, suite: 'dns', test: 'dns', rttMs, variant: 'cache', metric: 'lightAvgMs', kind: 'max', max: 1, strict: true, unit: ' ms', digits: 2 })
  }

  return t
}

/** Ratio oriented so that > 1 means `ours` is better (same as the table's). */
function orientedRatio(ours, theirs, better) {
  if (!(ours > 0) || !(theirs > 0)) return undefined
  return better === 'lower' ? theirs / ours : ours / theirs
}

const sameGroup = (r, t) => r.suite === t.suite && r.test === t.test && r.rttMs === t.rttMs

/**
 * Judges `targets` on aggregated `rows` (metrics are medians). A target whose row of ours is
 * absent (that row did not run) is left out; one whose row or competitor has no value (every
 * run failed) is reported with status 'no value'. Each check: { what, row, status:
 * 'met'|'missed'|'no value', ok, value, runs }.
 */
function judge(rows, targets) {
  const out = []
  for (const t of targets) {
    const ours = rows.find((r) => r.kind === 'ours' && r.row === t.row && sameGroup(r, t) && (t.variant === undefined || r.variant === t.variant))
    if (!ours) continue
    const v = ours.metrics[t.metric]
    const check = (status, value) => out.push({ what: t.what, row: t.row, status, ok: status === 'met', value, runs: ours.okRuns })
    if (t.kind === 'ratio') {
      const theirs = rows.find((r) => r.kind === 'competitor' && r.contender === t.vs && sameGroup(r, t))
      if (!theirs) continue
      const x = orientedRatio(v, theirs.metrics[t.metric], t.better)
      if (x === undefined) check('no value', '–')
      else check(x >= t.min ? 'met' : 'missed', `${x.toFixed(2)}×`)
    } else {
      if (typeof v !== 'number' || Number.isNaN(v)) {
        check('no value', '–')
        continue
      }
      const ok = t.kind === 'max' ? (t.strict ? v < t.max : v <= t.max) : t.strict ? v > t.min : v >= t.min
      check(ok ? 'met' : 'missed', `${v.toFixed(t.digits ?? 2)}${t.unit || ''}`)
    }
  }
  return out
}

/** The rows of ours some target judges ("nat/builtin", …). */
function judgedRows(targets = targetsFor()) {
  return [...new Set(targets.map((t) => t.row))]
}

module.exports = { README_ROW, OPENSSH_ROW, targetsFor, judge, judgedRows, orientedRatio }
