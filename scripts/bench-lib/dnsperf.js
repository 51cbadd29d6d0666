'use strict'
/**
 * dnsperf output, parsed (pure: no I/O). dnsperf 2.10 prints a "Statistics:" block at the end
 * and, with -v, one line per answered query:
 *
 *   > NOERROR db.corp.internal A 0.000251
 *
 * The summary gives qps and the average latency; the per-query lines give percentiles, which
 * dnsperf 2.10 does not print itself.
 */

/** Reads a number after `label` in the summary text; undefined when the line is missing. */
function numberAfter(text, label) {
  const i = text.indexOf(label)
  if (i < 0) return undefined
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)/.exec(text.slice(i + label.length))
  return m ? Number(m[1]) : undefined
}

/**
 * The "Statistics:" block of dnsperf's output. Throws when it is missing (dnsperf failed before
 * sending anything), so a broken run is never reported as 0 q/s.
 * @returns {{sent:number, completed:number, lost:number, qps:number, runTimeS:number,
 *   avgLatencyS:number, minLatencyS:number|undefined, maxLatencyS:number|undefined,
 *   stddevLatencyS:number|undefined, rcodes:Record<string,number>}}
 */
function parseSummary(text) {
  const at = text.indexOf('Statistics:')
  if (at < 0) throw new Error('dnsperf printed no statistics')
  const s = text.slice(at)
  const sent = numberAfter(s, 'Queries sent:')
  const completed = numberAfter(s, 'Queries completed:')
  const lost = numberAfter(s, 'Queries lost:')
  const qps = numberAfter(s, 'Queries per second:')
  const avg = numberAfter(s, 'Average Latency (s):')
  if ([sent, completed, lost, qps, avg].some((v) => v === undefined)) {
    throw new Error('dnsperf statistics incomplete')
  }
  const mm = /Average Latency \(s\):\s*[0-9.]+\s*\(min ([0-9.]+), max ([0-9.]+)\)/.exec(s)
  const rcodes = {}
  const rc = /Response codes:\s*([^\n]*)/.exec(s)
  if (rc) {
    for (const m of rc[1].matchAll(/([A-Z]+) ([0-9]+)/g)) rcodes[m[1]] = Number(m[2])
  }
  return {
    sent,
    completed,
    lost,
    qps,
    runTimeS: numberAfter(s, 'Run time (s):'),
    avgLatencyS: avg,
    minLatencyS: mm ? Number(mm[1]) : undefined,
    maxLatencyS: mm ? Number(mm[2]) : undefined,
    stddevLatencyS: numberAfter(s, 'Latency StdDev (s):'),
    rcodes,
  }
}

/**
 * One `-v` query line → { rcode, name, type, latencyS }, or undefined for any other line
 * (status lines, the summary, timeouts).
 */
function parseQueryLine(line) {
  const m = /^> ([A-Z0-9]+) (\S+) (\S+) ([0-9]+(?:\.[0-9]+)?)\s*$/.exec(line)
  if (!m) return undefined
  return { rcode: m[1], name: m[2], type: m[3], latencyS: Number(m[4]) }
}

/** Collects latencies (seconds) without keeping the text; grows like a vector. */
class LatencyRecorder {
  constructor() {
    this.values = new Float64Array(1024)
    this.count = 0
  }

  add(seconds) {
    if (this.count === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2)
      bigger.set(this.values)
      this.values = bigger
    }
    this.values[this.count++] = seconds
  }

  /**
   * Nearest-rank percentile (p in 0..100) of what was recorded; undefined when empty.
   * Nearest-rank, not interpolated: the p99 is a latency some query really had.
   */
  percentile(p) {
    if (this.count === 0) return undefined
    const sorted = this.values.slice(0, this.count).sort()
    const rank = Math.max(1, Math.ceil((p / 100) * this.count))
    return sorted[Math.min(rank, this.count) - 1]
  }
}

module.exports = { parseSummary, parseQueryLine, LatencyRecorder }
