import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { buildReport, teardownLines } = require('../../scripts/bench-lib/report.js')
const { RunBook } = require('../../scripts/bench-lib/runs.js')
const { targetsFor } = require('../../scripts/bench-lib/targets.js')
const { oursContender } = require('../../scripts/bench-lib/ours.js')
const bulk = require('../../scripts/bench-lib/suites/bulk.js')
const connrate = require('../../scripts/bench-lib/suites/connrate.js')

const MACHINE = {
  cpu: 'Test CPU', nproc: 2, memGiB: 8, kernel: 'Linux 6.1', os: 'Debian', load: [0.5, 0.4, 0.3],
  before: { idlePct: 95, stealPct: 0, busyPct: 5, seconds: 2 },
  versions: { node: 'v20', openssh: 'OpenSSH_9.2p1', sshuttle: '1.1.1', dnsperf: '2.10.0' },
}
const CLEAN = { stops: 6, leftovers: [], uncheckable: [], processes: [], afterDown: [] }

function run(repeat: number) {
  const book = new RunBook()
  const nat = { ...oursContender('nat', 'builtin'), kind: 'ours' }
  const sshL = { kind: 'competitor', contender: 'ssh -L', label: 'ssh -N -L (aes128-gcm)' }
  const id = (c: Record<string, unknown>, test: string) => ({ suite: 'bulk', test, rttMs: 0, ...c })
  const gb = [[3.0, 1.6], [3.4, 1.5], [3.2, 1.7]]
  for (let round = 1; round <= repeat; round++) {
    book.record(id(nat, 'bulk upload'), round, { gbps: gb[round - 1][0], retrans: 10, cpuSPerGB: gb[round - 1][1] })
    book.record(id(sshL, 'bulk upload'), round, { gbps: 4, retrans: 1, cpuSPerGB: 0.8 })
    book.fail(id(nat, 'bulk download'), round, 'iperf3: the server is busy', 'Error: iperf3: the server is busy\n    at …')
    book.record(id(sshL, 'bulk download'), round, { gbps: 4, retrans: 1, cpuSPerGB: 0.8 })
  }
  return buildReport({
    opts: { quick: false, only: ['bulk', 'connrate'], rtts: [0], ours: { bulk: ['nat'], connrate: ['nat'] }, engines: ['builtin'], repeat },
    suites: [bulk, connrate], machine: MACHINE, engines: { flag: false, supported: ['builtin'], engines: ['builtin'] },
    book, notes: ['a note'], suiteErrors: [{ suite: 'connrate', error: 'fast-http exited (code 1)' }], teardown: CLEAN,
    targets: targetsFor({ rtts: [0] }), seconds: 12.3, ports: { client: [16384, 65535] },
  })
}

describe('buildReport: JSON', () => {
  it('has the machine, options, every row with medians, spreads and every raw run, and the checks', () => {
    const { doc } = run(3)
    expect(Object.keys(doc).sort()).toEqual(['checks', 'engines', 'machine', 'notes', 'options', 'ports', 'rows', 'seconds', 'suiteErrors', 'teardown'])
    expect(doc.machine.before.idlePct).toBe(95)
    expect(doc.options).toEqual({ quick: false, only: ['bulk', 'connrate'], rtts: [0], ours: { bulk: ['nat'], connrate: ['nat'] }, engines: ['builtin'], repeat: 3 })
    const up = doc.rows.find((r: { contender: string; test: string }) => r.contender === 'subnet-tunnel nat/builtin' && r.test === 'bulk upload')
    expect(up).toMatchObject({
      suite: 'bulk', rttMs: 0, kind: 'ours', row: 'nat/builtin', method: 'nat', engine: 'builtin', okRuns: 3, failedRuns: 0,
      metrics: { gbps: 3.2, retrans: 10, cpuSPerGB: 1.6 }, spread: { gbps: { min: 3.0, max: 3.4 } },
    })
    expect(up.runs.map((r: { round: number; metrics: { gbps: number } }) => [r.round, r.metrics.gbps])).toEqual([[1, 3.0], [2, 3.4], [3, 3.2]])
    // Ratios come from the medians: 3.2 / 4.
    expect(up.ratios['ssh -L']).toBeCloseTo(0.8, 9)
    const down = doc.rows.find((r: { contender: string; test: string }) => r.contender === 'subnet-tunnel nat/builtin' && r.test === 'bulk download')
    expect(down.okRuns).toBe(0)
    expect(down.runs[0]).toEqual({ round: 1, error: 'iperf3: the server is busy', detail: 'Error: iperf3: the server is busy\n    at …' })
    expect(doc.checks.find((c: { what: string }) => c.what === 'bulk upload, RTT 0: ≥ 0.9× ssh -L')).toMatchObject({ status: 'missed', value: '0.80×', row: 'nat/builtin' })
    expect(doc.checks.find((c: { what: string }) => c.what === 'bulk download, RTT 0: ≥ 0.9× ssh -L')).toMatchObject({ status: 'no value' })
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc)
  })
})

describe('buildReport: text', () => {
  it('with --repeat: runs and min–max columns, failures with reasons, targets with their row, the machine and engines', () => {
    const { text } = run(3)
    const header = text.split('\n').find((l: string) => l.startsWith('test '))
    expect(header).toMatch(/runs\s+Gbit\/s\s+Gbit\/s min–max\s+retransmits\s+CPU s\/GB\s+CPU s\/GB min–max/)
    expect(text).toMatch(/bulk upload\s+0 ms\s+subnet-tunnel nat\/builtin\s+3\/3\s+3\.200\s+3\.000–3\.400/)
    expect(text).toMatch(/bulk download\s+0 ms\s+subnet-tunnel nat\/builtin\s+0\/3\s+–\s+–/)
    expect(text).toContain('FAILED bulk · bulk download · 0 ms · subnet-tunnel nat/builtin, round 2: iperf3: the server is busy')
    expect(text).toContain('FAILED suite connrate: fast-http exited (code 1)')
    expect(text).toContain('target MISSED  [nat/builtin] bulk upload, RTT 0: ≥ 0.9× ssh -L: 0.80×')
    expect(text).toContain('target no value [nat/builtin] bulk download, RTT 0: ≥ 0.9× ssh -L: –')
    expect(text).toContain('CPU idle 95.0 %')
    expect(text).toContain('engines: builtin only — this CLI has no --ssh-engine option')
    expect(text).toContain('3 per row, interleaved')
    expect(text).toContain('client 16384-65535')
  })

  it('one run per row: no spread columns', () => {
    const header = run(1).text.split('\n').find((l: string) => l.startsWith('test '))
    expect(header).not.toContain('min–max')
    // A failed run still shows the runs column, so "0/1" says why a cell is empty.
    expect(header).toMatch(/contender\s+runs/)
  })
})

describe('teardownLines', () => {
  it('says clean when it was, and names each leftover when not', () => {
    expect(teardownLines(CLEAN).join('\n')).toMatch(/clean after each of 6 stops[\s\S]*no process of ours[\s\S]*all gone/)
    const dirty = teardownLines({
      stops: 2, leftovers: [{ label: 'sshuttle', left: ['rule: -A sshuttle-12300'] }], uncheckable: [{ label: 'x', why: 'timeout' }],
      processes: [{ role: 'client', pid: 42, command: 'ssh -M' }], afterDown: ['namespace st-bench1-client'],
    }).join('\n')
    for (const s of ['LEFTOVERS after sshuttle: rule: -A sshuttle-12300', 'could not check after x: timeout', 'LEFTOVER process in client: pid 42 ssh -M', 'STILL THERE after removal: namespace st-bench1-client']) {
      expect(dirty).toContain(s)
    }
  })
})
