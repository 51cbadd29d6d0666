'use strict'
/**
 * Parsers for the TCP suites' tools (pure: no I/O): iperf3 -J, wrk's summary, /proc status,
 * stat and limits, and the medians the suites report.
 */

/**
 * iperf3 -J output → { bitsPerSecond, bytes, retransmits }. The figure is what the receiver got
 * (end.sum_received): with -R the receiver is the client, without it the server; either way it
 * excludes bytes still queued in socket buffers when the sender stopped.
 */
function parseIperf3Json(text) {
  let doc
  try {
    doc = JSON.parse(text)
  } catch {
    throw new Error('iperf3: output is not JSON')
  }
  if (doc.error) throw new Error(`iperf3: ${doc.error}`)
  const recv = doc.end && doc.end.sum_received
  if (!recv || typeof recv.bits_per_second !== 'number') throw new Error('iperf3: no end.sum_received in the output')
  const sent = doc.end.sum_sent || {}
  return { bitsPerSecond: recv.bits_per_second, bytes: recv.bytes, retransmits: sent.retransmits }
}

const TIME = { us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * wrk's text summary → { requestsPerSecond, requests, avgLatencyMs, errors }. errors counts
 * socket errors (connect, write, timeout) plus non-2xx/3xx responses. Read errors are left
 * out: with `Connection: close` wrk counts every server-side close as one (one per request).
 */
function parseWrk(text) {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)
  if (!rps) throw new Error('wrk: no "Requests/sec:" line in the output')
  const total = /^\s*(\d+) requests in /m.exec(text)
  const lat = /^\s*Latency\s+([\d.]+)(us|ms|s|m|h)\b/m.exec(text)
  let errors = 0
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  if (sock) errors += Number(sock[1]) + Number(sock[3]) + Number(sock[4])
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  if (non2xx) errors += Number(non2xx[1])
  return {
    requestsPerSecond: Number(rps[1]),
    requests: total ? Number(total[1]) : undefined,
    avgLatencyMs: lat ? Number(lat[1]) * TIME[lat[2]] : undefined,
    errors,
  }
}

/** "VmRSS:	  123456 kB" of a /proc/PID/status text → bytes (undefined when absent). */
function parseVmRss(status) {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  return m ? Number(m[1]) * 1024 : undefined
}

/**
 * "Pss:  123456 kB" of a /proc/PID/smaps_rollup text → bytes (undefined when absent). PSS divides
 * each shared page among the processes mapping it: summed over a process tree, the node binary
 * that a main process and its helper both map counts once, where RSS counts it twice.
 */
function parsePss(rollup) {
  const m = /^Pss:\s+(\d+)\s+kB/m.exec(rollup)
  return m ? Number(m[1]) * 1024 : undefined
}

/**
 * A /proc/PID/stat text → utime + stime of that process, in clock ticks (fields 14 and 15;
 * counted after the last ')' because comm, field 2, may hold spaces and parentheses).
 */
function parseStatCpuTicks(stat) {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // f[0] is field 3 (state): field n is f[n - 3].
  const utime = Number(f[11])
  const stime = Number(f[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('/proc stat: no utime/stime')
  return utime + stime
}

/** "Max open files  1024  20000  files" of a /proc/PID/limits text → { soft, hard } (Infinity: unlimited). */
function parseNofileLimits(limits) {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits)
  if (!m) return undefined
  const n = (v) => (v === 'unlimited' ? Infinity : Number(v))
  return { soft: n(m[1]), hard: n(m[2]) }
}

/** Median of numbers (undefined for none); the mean of the middle two for an even count. */
function median(values) {
  const v = values.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

module.exports = { parseIperf3Json, parseWrk, parseVmRss, parsePss, parseStatCpuTicks, parseNofileLimits, median }
