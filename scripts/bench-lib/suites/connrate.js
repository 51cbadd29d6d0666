'use strict'
/**
 * New connections per second (issue 5): wrk, 8 connections on 2 threads, every request with
 * `Connection: close` so each one is a fresh TCP connection (a fresh SSH channel through the
 * tunnels), to a minimal HTTP responder the suite starts on the private host, RTT 0.
 *
 * CPU µs per connection: utime + stime of the contender's client-side process tree (found by
 * parent pid at each reading: with the OpenSSH engine that includes the ssh -M master), over
 * the measured wrk run, divided by the requests wrk completed (one connection each).
 */
const path = require('node:path')
const { runToEnd } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts } = require('../contenders')
const { treeCpuTicks, cpuSecondsBetween } = require('../tree-measure')
const { parseWrk } = require('../perf-parse')
const { withRtt, startServerOnPort0, withContender, failReason, failDetail, oursOf, rowOf } = require('./tcp-util')

const CONNS = 8
/** fast-http.js in the private namespace: the testbed's Python server would be the bottleneck. */
const FAST_HTTP = path.join(__dirname, '..', 'fast-http.js')
const TEST = 'new conns (Connection: close)'
const columns = [
  { key: 'connPerS', label: 'conn/s', digits: 0, better: 'higher' },
  { key: 'errors', label: 'errors', digits: 0, better: 'lower' },
  { key: 'cpuUsPerConn', label: 'CPU µs/conn', digits: 0, better: 'lower' },
]
const seconds = (quick) => (quick ? 2 : 5)
const REFERENCE = { kind: 'reference', contender: 'no tunnel', label: 'no tunnel: from the bastion' }

/** wrk from namespace `role` to url for s seconds → parseWrk's figures (throws when it printed none). */
async function wrk(ctx, role, url, s) {
  const argv = nsArgv(ctx.tb, role, ['wrk', '-t', '2', '-c', String(CONNS), '-d', `${s}s`, '-H', 'Connection: close', url])
  const r = await runToEnd(argv, { timeoutMs: (s + 30) * 1000 })
  try {
    return parseWrk(r.stdout)
  } catch (e) {
    throw new Error(`${e.message}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').pop()}` : ''}`)
  }
}

async function run(ctx) {
  const server = await startServerOnPort0(nsArgv(ctx.tb, 'private', [process.execPath, FAST_HTTP, ctx.tb.privateIp, '0']), 'fast-http')
  try {
    await measureAll(ctx, server.port)
  } finally {
    await server.handle.stop()
  }
}

async function measureAll(ctx, port) {
  const s = seconds(ctx.quick)
  const refId = rowOf('connrate', TEST, 0, REFERENCE)
  await withRtt(ctx, 0, async (alias) => {
    const contenders = tcpContenders(ctx, { ours: oursOf(ctx, 'connrate') })
    for (let round = 1; round <= (ctx.repeat || 1); round++) {
      // The server alone, from the bastion: the ceiling of every row, measured each round too.
      try {
        const b = await wrk(ctx, 'bastion', `http://${ctx.tb.privateIp}:${port}/`, s)
        ctx.book.record(refId, round, { connPerS: b.requestsPerSecond, errors: b.errors })
      } catch (e) {
        ctx.book.fail(refId, round, failReason(e), failDetail(e))
      }
      for (const c of contenders) {
        const id = rowOf('connrate', TEST, 0, c)
        await withContender(ctx, c, alias, port, round, [id], async (target) => {
          const url = `http://${target.host}:${target.port}/`
          // A short warm-up: the first channel and lazy paths should not count.
          await wrk(ctx, 'client', url, 1).catch(() => undefined)
          const before = treeCpuTicks(target.handle.pid)
          const w = await wrk(ctx, 'client', url, s)
          const cpuS = cpuSecondsBetween(before, treeCpuTicks(target.handle.pid))
          const m = { connPerS: w.requestsPerSecond, errors: w.errors, cpuUsPerConn: w.requests > 0 ? (cpuS * 1e6) / w.requests : undefined }
          ctx.book.record(id, round, m)
          ctx.progress(`connrate ${c.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}: ${Math.round(m.connPerS)} conn/s, ${m.cpuUsPerConn === undefined ? '–' : Math.round(m.cpuUsPerConn)} CPU µs/conn`)
        })
      }
    }
  })
}

module.exports = {
  name: 'connrate',
  tools: ['wrk', 'sshuttle'],
  columns,
  primary: 'connPerS',
  alsoRatio: ['cpuUsPerConn'],
  describe: (quick) =>
    `connrate: wrk -t 2 -c ${CONNS} -d ${seconds(quick)}s -H 'Connection: close' to a minimal HTTP responder on the private host (fast-http.js), RTT 0; ` +
    "CPU µs/conn: utime+stime of the contender's client-side processes during the run, per connection",
  run,
  sshHosts: (rtts, relayPorts) => tcpSshHosts([0], relayPorts),
}
