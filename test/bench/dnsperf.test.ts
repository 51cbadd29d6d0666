import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { parseSummary, parseQueryLine, LatencyRecorder } = require('../../scripts/bench-lib/dnsperf.js')
const { ratio, withRatios, renderTable, formatNumber } = require('../../scripts/bench-lib/table.js')

// Real dnsperf 2.10.0 output (-v), shortened to a few query lines.
const OUTPUT = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -v -s 10.251.0.10 -d /tmp/q.txt -c 4 -l 1
[Status] Sending queries (to 10.251.0.10:53)
[Status] Started at: Sat Nov 21 05:48:24 2026
[Status] Stopping after 1.000000 seconds
> NOERROR db.corp.internal A 0.000251
> NOERROR db.corp.internal AAAA 0.000132
> NXDOMAIN missing.corp.internal A 0.000130
[Timeout] Query timed out: msg id 7
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         29489
  Queries completed:    29488 (100.00%)
  Queries lost:         1 (0.00%)

  Response codes:       NOERROR 22117 (75.00%), NXDOMAIN 7371 (25.00%)
  Average packet size:  request 35, response 104
  Run time (s):         1.003218
  Queries per second:   29394.408793

  Average Latency (s):  0.003127 (min 0.000071, max 0.008220)
  Latency StdDev (s):   0.001329

`

describe('dnsperf parsing', () => {
  it('reads the statistics block', () => {
    const s = parseSummary(OUTPUT)
    expect(s).toMatchObject({ sent: 29489, completed: 29488, lost: 1, qps: 29394.408793, runTimeS: 1.003218 })
    expect(s.avgLatencyS).toBe(0.003127)
    expect(s.minLatencyS).toBe(0.000071)
    expect(s.maxLatencyS).toBe(0.00822)
    expect(s.stddevLatencyS).toBe(0.001329)
    expect(s.rcodes).toEqual({ NOERROR: 22117, NXDOMAIN: 7371 })
  })

  it('refuses output without statistics instead of reporting 0 q/s', () => {
    expect(() => parseSummary('Error: socket: Operation not permitted\n')).toThrow(/no statistics/)
    expect(() => parseSummary('Statistics:\n  Queries sent: 10\n')).toThrow(/incomplete/)
  })

  it('reads -v query lines and ignores everything else', () => {
    const lines = OUTPUT.split('\n').map(parseQueryLine).filter(Boolean)
    expect(lines).toEqual([
      { rcode: 'NOERROR', name: 'db.corp.internal', type: 'A', latencyS: 0.000251 },
      { rcode: 'NOERROR', name: 'db.corp.internal', type: 'AAAA', latencyS: 0.000132 },
      { rcode: 'NXDOMAIN', name: 'missing.corp.internal', type: 'A', latencyS: 0.00013 },
    ])
    expect(parseQueryLine('[Timeout] Query timed out: msg id 7')).toBeUndefined()
    expect(parseQueryLine('  Queries sent:         29489')).toBeUndefined()
  })
})

describe('LatencyRecorder', () => {
  it('gives nearest-rank percentiles, across buffer growth', () => {
    const r = new LatencyRecorder()
    expect(r.percentile(99)).toBeUndefined()
    // 1..3000 in shuffled order: p99 is the 2970th smallest, p50 the 1500th.
    const values = Array.from({ length: 3000 }, (_, i) => i + 1)
    for (let i = values.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1)
      ;[values[i], values[j]] = [values[j]!, values[i]!]
    }
    for (const v of values) r.add(v)
    expect(r.count).toBe(3000)
    expect(r.percentile(99)).toBe(2970)
    expect(r.percentile(50)).toBe(1500)
    expect(r.percentile(100)).toBe(3000)
    expect(r.percentile(0)).toBe(1)
  })
})

describe('result table', () => {
  const suites = [
    {
      name: 'dns',
      primary: 'qps',
      columns: [
        { key: 'qps', label: 'q/s', digits: 0, better: 'higher' },
        { key: 'avgMs', label: 'avg ms', digits: 2, better: 'lower' },
      ],
    },
  ]
  const rows = [
    { suite: 'dns', test: 'dns', rttMs: 0, kind: 'ours', contender: 'subnet-tunnel', label: 'st', metrics: { qps: 6000, avgMs: 1 } },
    { suite: 'dns', test: 'dns', rttMs: 0, kind: 'competitor', contender: 'sshuttle', label: 'sshuttle', metrics: { qps: 2000, avgMs: 2 } },
    { suite: 'dns', test: 'dns', rttMs: 40, kind: 'ours', contender: 'subnet-tunnel', label: 'st', metrics: { qps: 1000, avgMs: 50 } },
    { suite: 'dns', test: 'dns', rttMs: 40, kind: 'competitor', contender: 'sshuttle', label: 'sshuttle', metrics: { qps: 2000, avgMs: 45 } },
  ]

  it('orients ratios so that > 1 means we are better', () => {
    expect(ratio(6000, 2000, 'higher')).toBe(3)
    expect(ratio(1, 2, 'lower')).toBe(2)
    expect(ratio(0, 2000, 'higher')).toBeUndefined()
  })

  it('compares only within the same RTT group', () => {
    const rated = withRatios(rows, { dns: { key: 'qps', better: 'higher' } })
    expect(rated[0].ratios).toEqual({ sshuttle: 3 })
    expect(rated[2].ratios).toEqual({ sshuttle: 0.5 })
    expect(rated[1].ratios).toBeUndefined()
  })

  it('renders absolute figures and a ratio column per competitor', () => {
    const { lines } = renderTable(rows, suites)
    expect(lines[0]).toMatch(/^test\s+RTT\s+contender\s+q\/s\s+avg ms\s+vs sshuttle$/)
    expect(lines[2]).toMatch(/^dns\s+0 ms\s+st\s+6,000\s+1\.00\s+3\.00×$/)
    expect(lines[3]).toMatch(/^dns\s+0 ms\s+sshuttle\s+2,000\s+2\.00$/)
    expect(lines[4]).toMatch(/0\.50×$/)
    expect(formatNumber(undefined)).toBe('–')
  })
})
