'use strict'
/**
 * Bulk throughput (issue 5): iperf3 upload (client → private host) and download (-R), with 1
 * and with 4 parallel streams (-P 4), through ssh -L, sshuttle and subnet-tunnel, at each RTT.
 * Through ssh -L iperf3 talks to the forward's local port; through the transparent tunnels to
 * the private IP itself.
 *
 * Each row also says what the contender's client-side processes spent in CPU (utime + stime
 * from /proc/PID/stat, read before and after the run) per GB that arrived: its whole process
 * tree found by parent pid at that moment (tree-measure.js) — subnet-tunnel's main process,
 * privileged helper and, with the OpenSSH engine, its ssh -M master; ssh -L's ssh;
 * sshuttle's client, ssh and firewall helper.
 */
const { runToEnd, sleep } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts, BENCH_CIPHER } = require('../contenders')
const { treeCpuTicks, cpuSecondsBetween } = require('../tree-measure')
const { parseIperf3Json } = require('../perf-parse')
const { withRtt, eachRound, withContender, failReason, failDetail, oursOf, rowOf } = require('./tcp-util')

const columns = [
  { key: 'gbps', label: 'Gbit/s', digits: 3, better: 'higher' },
  { key: 'retrans', label: 'retransmits', digits: 0, better: 'lower' },
  { key: 'cpuSPerGB', label: 'CPU s/GB', digits: 2, better: 'lower' },
]

const seconds = (quick) => (quick ? 2 : 5)
const STREAMS = [1, 4]
const testName = (dir, streams) => `bulk ${dir}${streams > 1 ? ` ×${streams}` : ''}`

/** One iperf3 run → { gbps, retrans, cpuSPerGB }; throws (with iperf3's reason) when it failed. */
async function iperf(ctx, target, reverse, streams, rttMs) {
  // With a round trip, TCP and the channel windows take a second or two to open up; iperf3's
  // own default of 10 s keeps that ramp from dominating the figure (same for every contender).
  const t = rttMs > 0 && !ctx.quick ? 10 : seconds(ctx.quick)
  const argv = nsArgv(ctx.tb, 'client', [
    'iperf3', '-c', target.host, '-p', String(target.port), '-t', String(t), '-J', '--connect-timeout', '5000',
    '-P', String(streams), ...(reverse ? ['-R'] : []),
  ])
  let r
  let cpuS
  // iperf3's server runs one test at a time and frees itself only once it sees the previous
  // test's connections closed — through a tunnel that can be a moment after our client exited,
  // and the next run is then refused with "the server is busy". Retry that, nothing else.
  for (let attempt = 1; ; attempt++) {
    const before = treeCpuTicks(target.handle.pid)
    // Slow rows (sshuttle with latency control at 40 ms) may need long to drain after -t.
    r = await runToEnd(argv, { timeoutMs: (t + 40) * 1000 })
    cpuS = cpuSecondsBetween(before, treeCpuTicks(target.handle.pid))
    if (attempt >= 5 || !/server is busy/.test(r.stdout)) break
    await sleep(1000)
  }
  let p
  try {
    p = parseIperf3Json(r.stdout)
  } catch (e) {
    throw new Error(`${e.message}${r.signal ? ` (killed: ${r.signal})` : ''}`)
  }
  // CPU per GB that arrived (iperf3's receiver count): bytes still queued when the sender
  // stopped cost CPU too, but the run is long enough for that to be noise.
  const cpuSPerGB = p.bytes > 0 ? cpuS / (p.bytes / 1e9) : undefined
  return { gbps: p.bitsPerSecond / 1e9, retrans: p.retransmits, cpuSPerGB }
}

const TESTS = STREAMS.flatMap((streams) => [['upload', false], ['download', true]].map(([dir, reverse]) => ({ test: testName(dir, streams), streams, reverse })))

async function run(ctx) {
  ctx.notes.push(`OpenSSH (ssh -L, and sshuttle's ssh) pinned to ${BENCH_CIPHER}; subnet-tunnel reads the same Ciphers line from the bench's ssh config.`)
  for (const rttMs of ctx.rtts) {
    await withRtt(ctx, rttMs, async (alias) => {
      await eachRound(ctx, tcpContenders(ctx, { ours: oursOf(ctx, 'bulk') }), async (c, round) => {
        const ids = TESTS.map((x) => rowOf('bulk', x.test, rttMs, c))
        await withContender(ctx, c, alias, Number(ctx.tb.iperfPort), round, ids, async (target) => {
          for (const [i, x] of TESTS.entries()) {
            const what = `${x.test} ${rttMs} ms ${c.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}`
            try {
              const m = await iperf(ctx, target, x.reverse, x.streams, rttMs)
              ctx.book.record(ids[i], round, m)
              ctx.progress(`${what}: ${m.gbps.toFixed(3)} Gbit/s, ${m.cpuSPerGB === undefined ? '–' : m.cpuSPerGB.toFixed(2)} CPU s/GB`)
            } catch (e) {
              ctx.book.fail(ids[i], round, failReason(e), failDetail(e))
              ctx.progress(`${what}: failed: ${failReason(e)}`)
            }
          }
        })
      })
    })
  }
}

module.exports = {
  name: 'bulk',
  tools: ['iperf3', 'sshuttle'],
  columns,
  primary: 'gbps',
  alsoRatio: ['cpuSPerGB'],
  describe: (quick) =>
    `bulk: iperf3 -c, 1 stream and 4 (-P 4), ${seconds(quick)} s (${quick ? seconds(quick) : 10} s when RTT > 0), upload and download (-R), to the private host's iperf3 server; ` +
    'CPU s/GB: utime+stime of the contender\'s client-side processes (/proc/PID/stat) during the run, per GB received',
  run,
  sshHosts: tcpSshHosts,
}
