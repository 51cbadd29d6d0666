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
const { withRtt, eachRound, withContender, oursOf, rowOf } = require('./tcp-util')

const TEST = 'time to first byte, fresh conn'
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
  const rttMs = rttOf(ctx.rtts)
  await withRtt(ctx, rttMs, async (alias) => {
    await eachRound(ctx, tcpContenders(ctx, { ours: oursOf(ctx, 'ttfb') }), async (c, round) => {
      const id = rowOf('ttfb', TEST, rttMs, c)
      await withContender(ctx, c, alias, Number(ctx.tb.httpPort), round, [id], async (target) => {
        await curlTtfb(ctx, target) // warm-up: lazy set-up on the first connection does not count
        const times = []
        for (let i = 0; i < count(ctx.quick); i++) times.push(await curlTtfb(ctx, target))
        const ok = times.filter((t) => t !== undefined)
        if (ok.length === 0) throw new Error(`all ${times.length} requests failed`)
        if (ok.length < times.length) ctx.notes.push(`ttfb ${c.label} (round ${round}): ${times.length - ok.length} of ${times.length} requests failed`)
        const m = { ttfbMs: median(ok), ttfbMaxMs: Math.max(...ok) }
        ctx.book.record(id, round, m)
        ctx.progress(`ttfb ${rttMs} ms ${c.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}: median ${m.ttfbMs.toFixed(1)} ms`)
      })
    })
  })
}

module.exports = {
  name: 'ttfb',
  tools: ['curl', 'sshuttle'],
  columns,
  primary: 'ttfbMs',
  describe: (quick) => `ttfb: curl -w %{time_starttransfer}, ${count(quick)} fresh connections one after another (after 1 warm-up), at the largest --rtt`,
  run,
  sshHosts: (rtts, relayPorts) => tcpSshHosts([rttOf(rtts)], relayPorts),
}
