'use strict'
/**
 * Start-up (issue 5): wall time from spawning the contender to the first successful HTTP GET
 * to the private host through it. A probe (net-client.js first-ok) is already retrying every
 * 10 ms in the client namespace when the contender is spawned (a new connection each time,
 * without waiting for the earlier ones: a SYN sent before the redirect exists is silently lost
 * and would otherwise hold the probe for the kernel's 1 s SYN retransmission), so the first
 * 200 marks when the path started to work. One run of a row is the median of a few starts
 * (each start is in the run's detail); --repeat N makes N such runs, interleaved.
 */
const { startDaemon } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts } = require('../contenders')
const { median } = require('../perf-parse')
const { NET_CLIENT, withRtt, eachRound, failReason, failDetail, oursOf, rowOf } = require('./tcp-util')

const TEST = 'start → first GET'
const columns = [{ key: 'startS', label: 'start → 1st GET s', digits: 3, better: 'lower' }]
const starts = (quick) => (quick ? 1 : 3)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** One timed start of contender c → seconds; throws with the reason when it failed. */
async function once(ctx, c, alias) {
  const port = Number(ctx.tb.httpPort)
  // Where the probe must connect is only known from the contender (ssh -L: a local port).
  const where = await c.address(port)
  const probe = await startDaemon(nsArgv(ctx.tb, 'client', [process.execPath, NET_CLIENT, 'first-ok', where.host, String(where.port)]), {
    label: 'probe first-ok', ready: /^probing/m, readyTimeoutMs: 10_000,
  })
  let target
  try {
    const t0 = Date.now()
    target = await c.start(alias, port, where, { timed: true })
    const deadline = Date.now() + 15_000
    let m
    while (!(m = /^ok (\d+)/m.exec(probe.output)) && Date.now() < deadline) await sleep(10)
    if (!m) throw new Error('no successful GET within 15 s of being ready')
    target.handle.remember() // after the clock stopped: scanning /proc costs CPU
    return (Number(m[1]) - t0) / 1000
  } finally {
    await probe.stop()
    if (target) await target.handle.stop()
  }
}

async function run(ctx) {
  await withRtt(ctx, 0, async (alias) => {
    await eachRound(ctx, tcpContenders(ctx, { ours: oursOf(ctx, 'startup') }), async (c, round) => {
      const id = rowOf('startup', TEST, 0, c)
      const times = []
      const errors = []
      for (let i = 0; i < starts(ctx.quick); i++) {
        try {
          times.push(await once(ctx, c, alias))
        } catch (e) {
          errors.push(e)
        }
      }
      const suffix = ctx.repeat > 1 ? ` (round ${round})` : ''
      if (times.length === 0) {
        ctx.book.fail(id, round, failReason(errors[0]), failDetail(errors[0]))
        ctx.progress(`startup ${c.label}${suffix}: failed: ${failReason(errors[0])}`)
        return
      }
      // A run with some failed starts still measured; the failures stay visible in a note.
      if (errors.length) ctx.notes.push(`startup ${c.label}${suffix}: ${errors.length} of ${starts(ctx.quick)} starts failed: ${failReason(errors[0])}`)
      ctx.book.record(id, round, { startS: median(times) }, { detail: { startsS: times, failedStarts: errors.map(failReason) } })
      ctx.progress(`startup ${c.label}${suffix}: ${times.map((x) => x.toFixed(3)).join(', ')} s${errors.length ? ` (${errors.length} failed: ${failReason(errors[0])})` : ''}`)
    })
  })
}

module.exports = {
  name: 'startup',
  tools: ['sshuttle'],
  columns,
  primary: 'startS',
  describe: (quick) => `startup: spawn → first HTTP 200 from the private host (probe retrying every 10 ms), RTT 0; one run = median of ${starts(quick)} start(s)`,
  run,
  sshHosts: (rtts, relayPorts) => tcpSshHosts([0], relayPorts),
}
