'use strict'
/**
 * Shared by the TCP suites (bulk, startup, connrate, ttfb, memory): run a function with a
 * contender up, and with the RTT relay up, always stopping both.
 */
const path = require('node:path')
const { startRelay } = require('../contenders')

const NET_CLIENT = path.join(__dirname, '..', 'net-client.js')

/** Runs fn(rttMs, alias) with the delay relay up when rttMs > 0 (alias: the pinned-cipher one). */
async function withRtt(ctx, rttMs, fn) {
  const relay = rttMs > 0 ? await startRelay(ctx, 10000 + rttMs, rttMs) : undefined
  try {
    return await fn(`bench-gcm-rtt${rttMs}`)
  } finally {
    if (relay) await relay.stop()
  }
}

/** Starts contender c towards the private host's port, runs fn(target), stops it. */
async function withContender(c, alias, port, fn) {
  const target = await c.start(alias, port)
  try {
    return await fn(target)
  } finally {
    await target.handle.stop()
  }
}

/**
 * Which of our paths (nat, nft, tun) `suite` runs: what scripts/bench resolved from --ours
 * (ours.js), nat alone when the suite runs without it.
 */
function oursOf(ctx, suite) {
  return (ctx.ours && ctx.ours[suite]) || ['nat']
}

/** A result row of the shared table. */
function row(suite, test, rttMs, c, metrics) {
  return { suite, test, rttMs, kind: c.kind, contender: c.contender, label: c.label, metrics }
}

module.exports = { NET_CLIENT, withRtt, withContender, row, oursOf }
