'use strict'
/**
 * Bulk throughput (issue 5): iperf3, 1 stream, upload (client → private host) and download
 * (-R), through ssh -L, sshuttle and subnet-tunnel, at each RTT. Through ssh -L iperf3 talks to
 * the forward's local port; through the transparent tunnels to the private IP itself.
 */
const { runToEnd } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts, BENCH_CIPHER } = require('../contenders')
const { parseIperf3Json } = require('../perf-parse')
const { withRtt, withContender, row } = require('./tcp-util')

const columns = [
  { key: 'gbps', label: 'Gbit/s', digits: 3, better: 'higher' },
  { key: 'retrans', label: 'retransmits', digits: 0, better: 'lower' },
]

const seconds = (quick) => (quick ? 2 : 5)

/** One iperf3 run; metrics with gbps undefined (and a note) when it failed. */
async function iperf(ctx, target, reverse, notes, what) {
  const t = seconds(ctx.quick)
  const argv = nsArgv(ctx.tb, 'client', [
    'iperf3', '-c', target.host, '-p', String(target.port), '-t', String(t), '-J', '--connect-timeout', '5000',
    ...(reverse ? ['-R'] : []),
  ])
  // Slow rows (sshuttle with latency control at 40 ms) may need long to drain after -t.
  const r = await runToEnd(argv, { timeoutMs: (t + 40) * 1000 })
  try {
    const p = parseIperf3Json(r.stdout)
    return { gbps: p.bitsPerSecond / 1e9, retrans: p.retransmits }
  } catch (e) {
    notes.push(`${what}: ${e.message}${r.signal ? ` (killed: ${r.signal})` : ''}`)
    return { gbps: undefined, retrans: undefined }
  }
}

async function run(ctx) {
  const rows = []
  const notes = [
    `OpenSSH (ssh -L, and sshuttle's ssh) pinned to ${BENCH_CIPHER}; subnet-tunnel does not read Ciphers from the ssh config and uses its own order, aes128-gcm first on AES-NI.`,
  ]
  for (const rttMs of ctx.rtts) {
    await withRtt(ctx, rttMs, async (alias) => {
      for (const c of tcpContenders(ctx)) {
        await withContender(c, alias, Number(ctx.tb.iperfPort), async (target) => {
          for (const [test, reverse] of [['bulk upload', false], ['bulk download', true]]) {
            const m = await iperf(ctx, target, reverse, notes, `${test} ${rttMs} ms ${c.label}`)
            rows.push(row('bulk', test, rttMs, c, m))
            ctx.progress(`${test} ${rttMs} ms ${c.label}: ${m.gbps === undefined ? 'failed' : m.gbps.toFixed(3) + ' Gbit/s'}`)
          }
        })
      }
    })
  }
  return { rows, notes, checks: checks(rows) }
}

/** The issue's bulk targets. */
function checks(rows) {
  const out = []
  const g = (test, rtt, who) => {
    const r = rows.find((x) => x.test === test && x.rttMs === rtt && x.contender === who)
    return r && r.metrics.gbps
  }
  const add = (what, ours, theirs, min) => {
    if (!(ours > 0) || !(theirs > 0)) return
    const x = ours / theirs
    out.push({ what, value: `${x.toFixed(2)}×`, ok: x >= min })
  }
  for (const test of ['bulk upload', 'bulk download']) {
    add(`${test}, RTT 0: ≥ 0.8× ssh -L`, g(test, 0, 'subnet-tunnel'), g(test, 0, 'ssh -L'), 0.8)
    add(`${test}, RTT 0: ≥ 10× sshuttle`, g(test, 0, 'subnet-tunnel'), g(test, 0, 'sshuttle'), 10)
  }
  add('bulk download, RTT 40 ms: ≥ 3× ssh -L', g('bulk download', 40, 'subnet-tunnel'), g('bulk download', 40, 'ssh -L'), 3)
  add('bulk upload, RTT 40 ms: ≥ 0.95× ssh -L', g('bulk upload', 40, 'subnet-tunnel'), g('bulk upload', 40, 'ssh -L'), 0.95)
  return out
}

module.exports = {
  name: 'bulk',
  tools: ['iperf3', 'sshuttle'],
  columns,
  primary: 'gbps',
  describe: (quick) => `bulk: iperf3 -c, 1 stream, ${seconds(quick)} s, upload and download (-R), to the private host's iperf3 server`,
  run,
  sshHosts: tcpSshHosts,
}
