'use strict'
/**
 * DNS (issue 3): dnsperf in the client namespace against the captured resolver, through
 * subnet-tunnel --dns (cache on, cache off; nat per engine, plus nft/tun rows when --ours asks)
 * and sshuttle --dns, at RTT 0 and 40 ms. All of them
 * resolve with the bastion's own resolver (its resolv.conf: the testbed's 127.0.0.53 stub,
 * which forwards to the private dnsmasq), so they ask the same server the same way.
 *
 * Two dnsperf runs per contender:
 *  - load: 4 clients, up to 100 queries outstanding (dnsperf's default) for N seconds → q/s, and
 *    latency under that load (at saturation mostly queueing: avg ≈ 100 / q/s, Little's law);
 *  - light: a fixed 1,000 q/s, which every contender sustains → the latency of one answer,
 *    which is the figure for "cached answers in under 1 ms".
 */
const fs = require('node:fs')
const path = require('node:path')
const { parseSummary, parseQueryLine, LatencyRecorder } = require('../dnsperf')
const { runToEnd } = require('../proc')
const { nsArgv } = require('../testbed')
const { startSubnetTunnel, startSshuttle } = require('../contenders')
const { oursContender, oursRows } = require('../ours')
const { withRtt, failReason, failDetail, oursOf, rowOf } = require('./tcp-util')

const CLIENTS = 4
const OUTSTANDING = 100
const LIGHT_QPS = 1000
const columns = [
  { key: 'qps', label: 'q/s', digits: 0, better: 'higher' },
  { key: 'avgMs', label: 'avg ms', digits: 2, better: 'lower' },
  { key: 'p99Ms', label: 'p99 ms', digits: 2, better: 'lower' },
  { key: 'lostPct', label: 'lost %', digits: 1, better: 'lower' },
  { key: 'lightAvgMs', label: `avg ms @${LIGHT_QPS / 1000}k q/s`, digits: 2, better: 'lower' },
  { key: 'lightP99Ms', label: `p99 ms @${LIGHT_QPS / 1000}k q/s`, digits: 2, better: 'lower' },
]

/** The query file: names only the private resolver knows (A, AAAA, and an NXDOMAIN with SOA). */
function writeQueries(ctx) {
  const tb = ctx.tb
  const file = path.join(ctx.dir, 'dns-queries.txt')
  const lines = [`${tb.dnsName} A`, `${tb.dnsName} AAAA`, `${tb.dnsAltName} A`, `nxdomain.${tb.dnsDomain} A`]
  fs.writeFileSync(file, lines.join('\n') + '\n')
  return { file, count: lines.length }
}

/** The first nameserver of the client namespace's resolv.conf: what --dns captures. */
function clientNameserver(tb) {
  try {
    const text = fs.readFileSync(`/etc/netns/${tb.clientNs}/resolv.conf`, 'utf8')
    const m = /^\s*nameserver\s+(\S+)/m.exec(text)
    if (m) return m[1]
  } catch {
    // no per-namespace resolv.conf: the host's applies, and the testbed always writes one
  }
  return '127.0.0.1'
}

/** Runs dnsperf once; returns the summary plus p99 (seconds) from the per-query lines. */
async function dnsperf(ctx, role, server, extra, seconds) {
  const lat = new LatencyRecorder()
  const argv = nsArgv(ctx.tb, role, ['dnsperf', '-v', '-s', server, '-d', ctx.queries.file, ...extra])
  const r = await runToEnd(argv, {
    timeoutMs: (seconds + 30) * 1000,
    onLine: (l) => {
      const q = parseQueryLine(l)
      if (q) lat.add(q.latencyS)
      return q !== undefined
    },
  })
  let summary
  try {
    summary = parseSummary(r.stdout)
  } catch (e) {
    throw new Error(`dnsperf (${argv.join(' ')}): ${e.message}\n${r.stdout.slice(-1500)}${r.stderr.slice(-1500)}`)
  }
  return { ...summary, p99S: lat.percentile(99) }
}

/**
 * Queries logged by the bastion's resolver (the stub every row asks) since byte `from` of its
 * log. dnsmasq logs each with `query[TYPE]`.
 */
function upstreamQueriesSince(tb, from) {
  try {
    const fd = fs.openSync(tb.dnsLogBastion, 'r')
    try {
      const size = fs.fstatSync(fd).size
      const buf = Buffer.alloc(Math.max(0, size - from))
      fs.readSync(fd, buf, 0, buf.length, from)
      return (buf.toString().match(/query\[/g) || []).length
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

function logSize(tb) {
  try {
    return fs.statSync(tb.dnsLogBastion).size
  } catch {
    return 0
  }
}

/** Warm-up, load run, light run against `server` from `role`; returns the row's metrics. */
async function measure(ctx, role, server, modeArgs = []) {
  const load = ctx.quick ? 3 : 10
  const light = ctx.quick ? 1 : 3
  // Warm-up: opens the SSH channels (and fills the cache) before the clock starts.
  await dnsperf(ctx, role, server, [...modeArgs, '-n', '2', '-c', '1'], 5)
  const before = logSize(ctx.tb)
  const l = await dnsperf(ctx, role, server, [...modeArgs, '-c', String(CLIENTS), '-q', String(OUTSTANDING), '-l', String(load)], load)
  const upstream = upstreamQueriesSince(ctx.tb, before)
  const w = await dnsperf(ctx, role, server, [...modeArgs, '-c', String(CLIENTS), '-Q', String(LIGHT_QPS), '-l', String(light)], light)
  return {
    metrics: {
      qps: l.qps,
      avgMs: l.avgLatencyS * 1000,
      p99Ms: l.p99S === undefined ? undefined : l.p99S * 1000,
      lostPct: l.sent > 0 ? (100 * l.lost) / l.sent : undefined,
      lightAvgMs: w.avgLatencyS * 1000,
      lightP99Ms: w.p99S === undefined ? undefined : w.p99S * 1000,
    },
    completed: l.completed,
    upstream,
  }
}

/**
 * The rows of one RTT, in table order: the no-tunnel references (RTT 0 only), each of our rows
 * (method × engine) with the cache on and off, then sshuttle. Each: { id, start?, role, server,
 * modeArgs? } — start() brings the contender up (undefined: measured from the bastion).
 */
function dnsRows(ctx, rttMs, alias, ns) {
  const tb = ctx.tb
  const out = []
  if (rttMs === 0) {
    // What the resolver itself sustains, without any tunnel: the ceiling for every row.
    const ref = (label) => ({ kind: 'reference', contender: 'no tunnel', label })
    out.push({ id: rowOf('dns', 'dns', 0, ref('no tunnel: UDP, on the bastion')), role: 'bastion', server: tb.bastionResolver })
    out.push({ id: rowOf('dns', 'dns', 0, ref(`no tunnel: TCP, ${CLIENTS} conns, on the bastion`)), role: 'bastion', server: tb.bastionResolver, modeArgs: ['-m', 'tcp'] })
  }
  for (const { method, engine } of oursRows(oursOf(ctx, 'dns'), ctx.engines || ['builtin'])) {
    const who = { ...oursContender(method, engine), kind: 'ours' }
    for (const [variant, args, what] of [['cache', ['--dns'], '--dns (cache hits)'], ['no-cache', ['--dns', '--no-dns-cache'], '--dns --no-dns-cache']]) {
      const label = `subnet-tunnel ${who.row} ${what}${who.judged ? '' : ' (not judged)'}`
      out.push({ id: rowOf('dns', 'dns', rttMs, { ...who, label }, { variant }), role: 'client', server: ns, start: () => startSubnetTunnel(ctx, alias, args, { method, engine }) })
    }
  }
  const sshuttle = { kind: 'competitor', contender: 'sshuttle', label: 'sshuttle --dns' }
  out.push({ id: rowOf('dns', 'dns', rttMs, sshuttle), role: 'client', server: ns, start: () => startSshuttle(ctx, alias, ['--dns']) })
  return out
}

/** Measures one DNS row in `round`: the contender up (if any), measure, stop; a failure stays in its row. */
async function measureRow(ctx, r, round) {
  const name = `dns ${r.id.rttMs} ms ${r.id.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}`
  let handle
  try {
    if (r.start) {
      handle = await r.start()
      handle.remember()
    }
    const m = await measure(ctx, r.role, r.server, r.modeArgs)
    ctx.book.record(r.id, round, m.metrics, { detail: { completed: m.completed, upstream: m.upstream } })
    // Once per row (round 1): the same sentence every round would bury the other notes.
    if (r.id.variant === 'cache' && m.upstream !== undefined && round === 1) {
      ctx.notes.push(`${name}: ${m.upstream} of ${m.completed.toLocaleString('en-US')} answered queries reached the resolver (the rest were cache hits).`)
    }
    ctx.progress(
      `${name}: ${Math.round(m.metrics.qps)} q/s, ${m.metrics.lightAvgMs.toFixed(2)} ms @${LIGHT_QPS} q/s (resolver logged ${m.upstream} queries for ${m.completed} answers)`,
    )
  } catch (e) {
    ctx.book.fail(r.id, round, failReason(e), failDetail(e))
    ctx.progress(`${name}: failed: ${failReason(e)}`)
  } finally {
    if (handle) await handle.stop()
  }
}

async function run(ctx) {
  const tb = ctx.tb
  ctx.queries = writeQueries(ctx)
  const ns = clientNameserver(tb)
  ctx.notes.push(
    `cache hits: ${ctx.queries.count} names with a ${tb.dnsTtl} s TTL, warmed before the clock starts; --no-dns-cache and sshuttle (no cache) send every query to the resolver.`,
    'light-load columns: a fixed 1,000 q/s every row sustains, so they show the time of one answer; under full load latency is mostly queueing (avg ≈ 100 outstanding / q/s).',
  )
  for (const rttMs of ctx.rtts) {
    await withRtt(ctx, rttMs, async (alias) => {
      const rows = dnsRows(ctx, rttMs, alias, ns)
      for (let round = 1; round <= (ctx.repeat || 1); round++) {
        for (const r of rows) await measureRow(ctx, r, round)
      }
    }, `bench-rtt${rttMs}`)
  }
}

module.exports = {
  name: 'dns',
  tools: ['dnsperf', 'sshuttle'],
  columns,
  primary: 'qps',
  describe: (quick) =>
    `dns: dnsperf -c ${CLIENTS} -q ${OUTSTANDING} for ${quick ? 3 : 10} s per row (A, AAAA, NXDOMAIN of the private zone, ` +
    `to the client's resolv.conf nameserver), then ${quick ? 1 : 3} s at ${LIGHT_QPS} q/s for the light-load latency`,
  run,
  sshHosts: (rtts, relayPorts) => rtts.map((r) => ({ alias: `bench-rtt${r}`, port: r > 0 ? relayPorts[r] : 22 })),
}
