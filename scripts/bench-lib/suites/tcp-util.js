'use strict'
/**
 * Shared by the suites: rounds (--repeat), a contender up for the length of a function, the RTT
 * relay up for the length of another, and failures kept to the rows they concern.
 *
 * A failure — a contender that does not start, a tool whose output does not parse, a stop
 * that throws — is recorded on the rows of that contender and round (ctx.book, runs.js) with
 * its reason, and the suite goes on with the next contender; the report lists every failure.
 */
const path = require('node:path')
const { startRelay } = require('../contenders')
const { startDaemon } = require('../proc')

const NET_CLIENT = path.join(__dirname, '..', 'net-client.js')

/**
 * Runs fn(alias) with the delay relay up when rttMs > 0 (alias: the pinned-cipher one). A relay
 * that does not start fails the whole block (every row behind it needs it): the caller's
 * suite-level catch reports it.
 */
async function withRtt(ctx, rttMs, fn, alias = `bench-gcm-rtt${rttMs}`) {
  const relay = rttMs > 0 ? await startRelay(ctx, rttMs) : undefined
  try {
    return await fn(alias)
  } finally {
    if (relay) await relay.stop()
  }
}

/**
 * Starts one of our servers (fast-http.js, net-client.js echo) on port 0 and reads back the
 * port it got from its "listening HOST:PORT" line: a port the kernel hands to bind() is free
 * at that moment, and no connect() can take it while the server holds it.
 * @returns { handle, port }
 */
async function startServerOnPort0(argv, label) {
  const handle = await startDaemon(argv, { label, ready: /^listening \S+:\d+$/m, readyTimeoutMs: 10_000 })
  return { handle, port: Number(/^listening \S+:(\d+)$/m.exec(handle.output)[1]) }
}

/**
 * Rounds 1..ctx.repeat; in each, fn(c, round) for every contender in order. Interleaved, not
 * N runs of one contender in a row: drift on a shared machine then hits every contender alike.
 */
async function eachRound(ctx, contenders, fn) {
  const repeat = ctx.repeat || 1
  for (let round = 1; round <= repeat; round++) {
    for (const c of contenders) await fn(c, round)
  }
}

/** One line saying why: the error's first line, and the tool's own last line when it printed one. */
function failReason(e) {
  const text = String((e && e.message) || e)
  const first = text.split('\n')[0].trim()
  const out = /\n {2}output:\n([\s\S]*)$/.exec(text)
  const last = out && out[1].trim().split('\n').filter((l) => l.trim()).pop()
  return (last && !first.includes(last.trim()) ? `${first}: ${last.trim()}` : first).slice(0, 400)
}

/** A failure's detail for the JSON (bounded). */
function failDetail(e) {
  return String((e && e.stack) || e).slice(0, 4000)
}

/**
 * Starts contender c towards the private host's port, runs fn(target), stops it. When any step
 * throws, the rows `ids` with no run in this round yet get a failed run with the reason; the
 * error goes no further. addr: where the client connects, when the caller needed it first.
 */
async function withContender(ctx, c, alias, port, round, ids, fn, addr) {
  let target
  const failed = (e, what) => {
    ctx.progress(`${what} ${c.label} (round ${round}) failed: ${failReason(e)}`)
    ctx.book.failMissing(ids, round, `${what}: ${failReason(e)}`, failDetail(e))
  }
  try {
    target = await c.start(alias, port, addr)
  } catch (e) {
    failed(e, 'start')
    return
  }
  // Its children as of now, so a tool that dies by itself leaves none behind (proc.js).
  if (target.handle.remember) target.handle.remember()
  try {
    await fn(target)
  } catch (e) {
    failed(e, 'measure')
  } finally {
    try {
      await target.handle.stop()
    } catch (e) {
      ctx.progress(`stop ${c.label} failed: ${failReason(e)}`)
      ctx.notes.push(`stop ${c.label} (round ${round}) failed: ${failReason(e)}`)
    }
  }
}

/**
 * Which of our methods (nat, nft, tun) `suite` runs: what scripts/bench resolved from --ours
 * (ours.js), nat alone when the suite runs without it.
 */
function oursOf(ctx, suite) {
  return (ctx.ours && ctx.ours[suite]) || ['nat']
}

/** The identity of a result row (runs.js) of contender c. */
function rowOf(suite, test, rttMs, c, extra = {}) {
  return { suite, test, rttMs, kind: c.kind, contender: c.contender, label: c.label, row: c.row, method: c.method, engine: c.engine, ...extra }
}

module.exports = { NET_CLIENT, withRtt, startServerOnPort0, eachRound, withContender, failReason, failDetail, oursOf, rowOf }
