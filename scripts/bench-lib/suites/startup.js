'use strict'
/**
 * Start-up (issue 5): wall time from spawning the contender to the first successful HTTP GET
 * to the private host through it. A probe (net-client.js first-ok) is already retrying every
 * 10 ms in the client namespace when the contender is spawned (a new connection each time,
 * without waiting for the earlier ones: a SYN sent before the redirect exists is silently lost
 * and would otherwise hold the probe for the kernel's 1 s SYN retransmission), so the first
 * 200 marks when the path started to work. Median over a few starts.
 */
const { startDaemon } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts } = require('../contenders')
const { median } = require('../perf-parse')
const { NET_CLIENT, withRtt, row, oursOf } = require('./tcp-util')

const columns = [{ key: 'startS', label: 'start → 1st GET s', digits: 3, better: 'lower' }]
const repeats = (quick) => (quick ? 1 : 3)

/** One timed start of contender c; seconds, or undefined with a note when it failed. */
async function once(ctx, c, alias, notes) {
  const port = Number(ctx.tb.httpPort)
  // Where the probe must connect is only known from the contender (ssh -L: a local port).
  const where = c.contender === 'ssh -L' ? ['127.0.0.1', String(20000 + port)] : [ctx.tb.privateIp, String(port)]
  const probe = await startDaemon(nsArgv(ctx.tb, 'client', [process.execPath, NET_CLIENT, 'first-ok', ...where]), {
    label: 'probe first-ok', ready: /^probing/m, readyTimeoutMs: 10_000,
  })
  let target
  try {
    const t0 = Date.now()
    target = await c.start(alias, port)
    const deadline = Date.now() + 15_000
    let m
    while (!(m = /^ok (\d+)/m.exec(probe.output)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    if (!m) {
      notes.push(`startup ${c.label}: no successful GET within 15 s of being ready`)
      return undefined
    }
    return (Number(m[1]) - t0) / 1000
  } catch (e) {
    notes.push(`startup ${c.label}: ${e.message.split('\n')[0]}`)
    return undefined
  } finally {
    await probe.stop()
    if (target) await target.handle.stop()
  }
}

async function run(ctx) {
  const rows = []
  const notes = []
  await withRtt(ctx, 0, async (alias) => {
    for (const c of tcpContenders(ctx, { ours: oursOf(ctx, 'startup') })) {
      const runs = []
      for (let i = 0; i < repeats(ctx.quick); i++) runs.push(await once(ctx, c, alias, notes))
      const s = median(runs)
      rows.push(row('startup', 'start → first GET', 0, c, { startS: s }))
      ctx.progress(`startup ${c.label}: ${runs.map((x) => (x === undefined ? '–' : x.toFixed(3))).join(', ')} s`)
    }
  })
  const ours = rows.find((r) => r.contender === 'subnet-tunnel')
  const checks = ours && ours.metrics.startS !== undefined
    ? [{ what: 'start to first successful request ≤ 0.5 s at RTT 0', value: `${ours.metrics.startS.toFixed(3)} s`, ok: ours.metrics.startS <= 0.5 }]
    : []
  return { rows, notes, checks }
}

module.exports = {
  name: 'startup',
  tools: ['sshuttle'],
  columns,
  primary: 'startS',
  describe: (quick) => `startup: spawn → first HTTP 200 from the private host (probe retrying every 10 ms), RTT 0, median of ${repeats(quick)}`,
  run,
  sshHosts: () => tcpSshHosts([0]),
}
