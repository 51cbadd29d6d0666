'use strict'
/**
 * Time to first byte of a fresh connection (issue 5): curl -w %{time_starttransfer}, one
 * fresh connection each, sequentially, to the private host's HTTP server; median and max over
 * N. Measured at the largest RTT of --rtt (40 ms by default): with a relay in front of sshd, a
 * fresh connection costs at least one round trip to open its channel, plus the request's.
 */
const { runToEnd } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts } = require('../contenders')
const { median } = require('../perf-parse')
const { withRtt, withContender, row, oursOf } = require('./tcp-util')

const columns = [
  { key: 'ttfbMs', label: 'TTFB median ms', digits: 1, better: 'lower' },
  { key: 'ttfbMaxMs', label: 'TTFB max ms', digits: 1, better: 'lower' },
]
const count = (quick) => (quick ? 5 : 20)
const rttOf = (rtts) => Math.max(...rtts)

/** curl's time_starttransfer in ms (undefined when the request failed). */
async function curlTtfb(ctx, target) {
  const url = `http://${target.host}:${target.port}/`
  const r = await runToEnd(nsArgv(ctx.tb, 'client', ['curl', '-s', '-o', '/dev/null', '--max-time', '10', '-w', '%{http_code} %{time_starttransfer}', url]), { timeoutMs: 20_000 })
  const m = /^200 ([\d.]+)/.exec(r.stdout.trim())
  return m ? Number(m[1]) * 1000 : undefined
}

async function run(ctx) {
  const rows = []
  const notes = []
  const rttMs = rttOf(ctx.rtts)
  await withRtt(ctx, rttMs, async (alias) => {
    for (const c of tcpContenders(ctx, { ours: oursOf(ctx, 'ttfb') })) {
      await withContender(c, alias, Number(ctx.tb.httpPort), async (target) => {
        await curlTtfb(ctx, target) // warm-up: lazy set-up on the first connection does not count
        const times = []
        for (let i = 0; i < count(ctx.quick); i++) times.push(await curlTtfb(ctx, target))
        const ok = times.filter((t) => t !== undefined)
        if (ok.length < times.length) notes.push(`ttfb ${c.label}: ${times.length - ok.length} of ${times.length} requests failed`)
        const m = { ttfbMs: median(ok), ttfbMaxMs: ok.length ? Math.max(...ok) : undefined }
        rows.push(row('ttfb', 'time to first byte, fresh conn', rttMs, c, m))
        ctx.progress(`ttfb ${rttMs} ms ${c.label}: median ${m.ttfbMs === undefined ? '–' : m.ttfbMs.toFixed(1)} ms`)
      })
    }
  })
  const ours = rows.find((r) => r.contender === 'subnet-tunnel')
  const bound = 2 * rttMs + 5
  const checks = ours && ours.metrics.ttfbMs !== undefined
    ? [{ what: `time to first byte at RTT ${rttMs} ms ≤ 2 RTT + 5 ms (${bound} ms)`, value: `${ours.metrics.ttfbMs.toFixed(1)} ms`, ok: ours.metrics.ttfbMs <= bound }]
    : []
  return { rows, notes, checks }
}

module.exports = {
  name: 'ttfb',
  tools: ['curl', 'sshuttle'],
  columns,
  primary: 'ttfbMs',
  describe: (quick) => `ttfb: curl -w %{time_starttransfer}, ${count(quick)} fresh connections one after another (after 1 warm-up), at the largest --rtt`,
  run,
  sshHosts: (rtts) => tcpSshHosts([rttOf(rtts)]),
}
