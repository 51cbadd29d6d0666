'use strict'
/**
 * New connections per second (issue 5): wrk, 8 connections on 2 threads, every request with
 * `Connection: close` so each one is a fresh TCP connection (a fresh SSH channel through the
 * tunnels), to a minimal HTTP responder the suite starts on the private host, RTT 0.
 */
const path = require('node:path')
const { runToEnd, startDaemon } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts } = require('../contenders')
const { parseWrk } = require('../perf-parse')
const { withRtt, withContender, row, oursOf } = require('./tcp-util')

const CONNS = 8
/** fast-http.js in the private namespace: the testbed's Python server would be the bottleneck. */
const FAST_HTTP_PORT = 8080
const FAST_HTTP = path.join(__dirname, '..', 'fast-http.js')
const columns = [
  { key: 'connPerS', label: 'conn/s', digits: 0, better: 'higher' },
  { key: 'errors', label: 'errors', digits: 0, better: 'lower' },
]
const seconds = (quick) => (quick ? 2 : 5)

async function wrk(ctx, target, s) {
  const url = `http://${target.host}:${target.port}/`
  const argv = nsArgv(ctx.tb, 'client', ['wrk', '-t', '2', '-c', String(CONNS), '-d', `${s}s`, '-H', 'Connection: close', url])
  const r = await runToEnd(argv, { timeoutMs: (s + 30) * 1000 })
  return parseWrk(r.stdout)
}

async function run(ctx) {
  const rows = []
  const notes = []
  const server = await startDaemon(nsArgv(ctx.tb, 'private', [process.execPath, FAST_HTTP, ctx.tb.privateIp, String(FAST_HTTP_PORT)]), {
    label: 'fast-http', ready: /^listening /m, readyTimeoutMs: 10_000,
  })
  try {
    await measureAll(ctx, rows, notes)
  } finally {
    await server.stop()
  }
  return { rows, notes, checks: checks(rows) }
}

async function measureAll(ctx, rows, notes) {
  // The server alone, from the bastion: the ceiling of every row.
  const bastionWrk = async () => {
    const argv = nsArgv(ctx.tb, 'bastion', ['wrk', '-t', '2', '-c', String(CONNS), '-d', `${seconds(ctx.quick)}s`, '-H', 'Connection: close', `http://${ctx.tb.privateIp}:${FAST_HTTP_PORT}/`])
    return parseWrk((await runToEnd(argv, { timeoutMs: 60_000 })).stdout)
  }
  try {
    const b = await bastionWrk()
    rows.push({ suite: 'connrate', test: 'new conns (Connection: close)', rttMs: 0, kind: 'reference', contender: 'no tunnel', label: 'no tunnel: from the bastion', metrics: { connPerS: b.requestsPerSecond, errors: b.errors } })
  } catch (e) {
    notes.push(`connrate reference: ${e.message}`)
  }
  await withRtt(ctx, 0, async (alias) => {
    for (const c of tcpContenders(ctx, { ours: oursOf(ctx, 'connrate') })) {
      await withContender(c, alias, FAST_HTTP_PORT, async (target) => {
        // A short warm-up: the first channel and lazy paths should not count.
        await wrk(ctx, target, 1).catch(() => undefined)
        let m = { connPerS: undefined, errors: undefined }
        try {
          const w = await wrk(ctx, target, seconds(ctx.quick))
          m = { connPerS: w.requestsPerSecond, errors: w.errors }
        } catch (e) {
          notes.push(`connrate ${c.label}: ${e.message}`)
        }
        rows.push(row('connrate', 'new conns (Connection: close)', 0, c, m))
        ctx.progress(`connrate ${c.label}: ${m.connPerS === undefined ? 'failed' : Math.round(m.connPerS) + ' conn/s'}`)
      })
    }
  })
}

function checks(rows) {
  const get = (who) => (rows.find((r) => r.contender === who) || { metrics: {} }).metrics.connPerS
  const ours = get('subnet-tunnel')
  const out = []
  for (const [who, min] of [['ssh -L', 1.0], ['sshuttle', 1.5]]) {
    const theirs = get(who)
    if (ours > 0 && theirs > 0) out.push({ what: `new connections/s at RTT 0: ≥ ${min}× ${who}`, value: `${(ours / theirs).toFixed(2)}×`, ok: ours / theirs >= min })
  }
  return out
}

module.exports = {
  name: 'connrate',
  tools: ['wrk', 'sshuttle'],
  columns,
  primary: 'connPerS',
  describe: (quick) => `connrate: wrk -t 2 -c ${CONNS} -d ${seconds(quick)}s -H 'Connection: close' to a minimal HTTP responder on the private host (fast-http.js), RTT 0`,
  run,
  sshHosts: () => tcpSshHosts([0]),
}
