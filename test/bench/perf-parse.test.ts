import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { parseIperf3Json, parseWrk, parseVmRss, parsePss, parseStatCpuTicks, parseNofileLimits, median } = require('../../scripts/bench-lib/perf-parse.js')

// Trimmed from real iperf 3.12 -J output (the fields the bench reads).
const IPERF = JSON.stringify({
  start: { version: 'iperf 3.12' },
  end: {
    sum_sent: { bytes: 1587150848, bits_per_second: 12676506049.62097, retransmits: 653 },
    sum_received: { bytes: 1585840128, bits_per_second: 12643996958.277979 },
  },
})

// Real wrk 4.1.0 output with `-H 'Connection: close'` against a server that closes.
const WRK = `Running 2s test @ http://10.251.0.10/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.52ms    3.93ms  27.50ms   81.99%
    Req/Sec   617.20    150.70     0.93k    70.00%
  2463 requests in 2.00s, 519.72KB read
  Socket errors: connect 3, read 2463, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   1228.88
Transfer/sec:    259.31KB
`

describe('parseIperf3Json', () => {
  it('reports what the receiver got, and the sender retransmits', () => {
    expect(parseIperf3Json(IPERF)).toEqual({ bitsPerSecond: 12643996958.277979, bytes: 1585840128, retransmits: 653 })
  })
  it('surfaces iperf3 errors and rejects output without a summary', () => {
    expect(() => parseIperf3Json(JSON.stringify({ error: 'the server is busy running a test' }))).toThrow(/server is busy/)
    expect(() => parseIperf3Json(JSON.stringify({ end: {} }))).toThrow(/sum_received/)
    expect(() => parseIperf3Json('iperf3: error - unable to connect')).toThrow(/not JSON/)
  })
})

describe('parseWrk', () => {
  it('reads the rate, count and latency; read errors (server closes) are not errors', () => {
    expect(parseWrk(WRK)).toEqual({ requestsPerSecond: 1228.88, requests: 2463, avgLatencyMs: 6.52, errors: 3 + 1 + 2 + 4 })
  })
  it('converts latency units and defaults to no errors', () => {
    const text = '  Latency   850.00us  1.00ms\n  100 requests in 1.00s, 1KB read\nRequests/sec:    100.00\n'
    expect(parseWrk(text)).toEqual({ requestsPerSecond: 100, requests: 100, avgLatencyMs: 0.85, errors: 0 })
  })
  it('rejects output without a rate', () => {
    expect(() => parseWrk('unable to connect to 10.251.0.10:80 Connection refused')).toThrow(/Requests\/sec/)
  })
})

describe('parsePss', () => {
  it('reads Pss from smaps_rollup, not Pss_Anon or Rss', () => {
    const rollup = '55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  50076 kB\nPss:  31234 kB\nPss_Anon:  6800 kB\n'
    expect(parsePss(rollup)).toBe(31234 * 1024)
    expect(parsePss('Rss:  5 kB\n')).toBeUndefined()
  })
})

describe('parseVmRss', () => {
  it('reads kB as bytes', () => {
    expect(parseVmRss('Name:\tnode\nVmHWM:\t   62516 kB\nVmRSS:\t   61000 kB\n')).toBe(61000 * 1024)
    expect(parseVmRss('Name:\tkworker\n')).toBeUndefined()
  })
})

describe('median', () => {
  it('handles odd and even counts, ignoring missing values', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, undefined, 3, 2])).toBe(2.5)
    expect(median([undefined])).toBeUndefined()
  })
})

describe('parseStatCpuTicks', () => {
  it('adds utime and stime, counting fields after the last parenthesis of comm', () => {
    // Real /proc/PID/stat of node, with a comm holding a space and a parenthesis.
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 28760 0 0 0 137 42 0 0 20 0 11 0 1234 1000000 12000 18446744073709551615'
    expect(parseStatCpuTicks(stat)).toBe(179)
  })
  it('throws on text that is not a stat line', () => {
    expect(() => parseStatCpuTicks('garbage')).toThrow(/utime/)
  })
})

describe('parseNofileLimits', () => {
  it('reads soft and hard open-files limits, unlimited as Infinity', () => {
    const limits = 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 20000                files\n'
    expect(parseNofileLimits(limits)).toEqual({ soft: 1024, hard: 20000 })
    expect(parseNofileLimits('Max open files            unlimited            unlimited            files')).toEqual({ soft: Infinity, hard: Infinity })
    expect(parseNofileLimits('Max processes 10 10')).toBeUndefined()
  })
})
