'use strict'
/**
 * Memory and capacity with idle connections held (issue 5): 1,000 and 10,000 connections
 * through each contender to an echo server on the private host, each proven with one echoed
 * line, then held idle. Read while they are all open: the RSS of the contender's process tree
 * (sshuttle: with its ssh and firewall helper; subnet-tunnel: with its privileged helper;
 * ssh -L: the ssh process) and of its main process alone, how many connections were held, and
 * how many SSH connections the contender had open to the bastion. RTT 0.
 *
 * The bastion's sshd runs under a soft limit of 1,024 open files (scripts/bench starts the
 * testbed so), like a stock systemd one: one SSH connection holds ~1,000 forwarded
 * connections, so 10,000 need several. Everything on our side — the contenders, the client
 * that holds the connections, the echo server (our own, one thread: the testbed's Python one
 * spends a thread per connection) — runs with a soft limit high enough for 10,000, so only
 * the tunnel and the bastion are measured.
 */
const fs = require('node:fs')
const path = require('node:path')
const { startDaemon, runToEnd, isRunning, sleep } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts, treeRss, treePss, withNofile, hardNofile } = require('../contenders')
const { parseNofileLimits } = require('../perf-parse')
const { withRtt, withContender, row, NET_CLIENT, oursOf } = require('./tcp-util')

const columns = [
  { key: 'rssMB', label: 'RSS MB held', digits: 1, better: 'lower' },
  { key: 'idleRssMB', label: 'RSS MB idle', digits: 1, better: 'lower' },
  { key: 'mainRssMB', label: 'main proc MB held', digits: 1, better: 'lower' },
  { key: 'pssMB', label: 'PSS MB held', digits: 1, better: 'lower' },
  { key: 'held', label: 'conns held', digits: 0, better: 'higher' },
  { key: 'okPct', label: '% held', digits: 1, better: 'higher' },
  { key: 'sshConns', label: 'SSH conns', digits: 0, better: 'lower' },
]
const counts = (quick) => (quick ? [200, 2000] : [1000, 10000])
/** The echo server the suite starts on the private host (the testbed's is on 9000). */
const ECHO_PORT = 9100
/** Soft open-files limit of the processes the suite starts: room for 10,000 sockets and then some. */
const NOFILE = 16384

/** The soft open-files limit of the testbed's sshd (its listener; sessions inherit it). */
function sshdNofile(tb) {
  try {
    const pid = fs.readFileSync(path.join(tb.dir, 'sshd.pid'), 'utf8').trim()
    const l = parseNofileLimits(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))
    return l && (l.soft === Infinity ? 'unlimited' : String(l.soft))
  } catch {
    return undefined
  }
}

/** Established TCP connections from the client namespace to the bastion's sshd (:22). */
async function sshConnections(ctx) {
  const r = await runToEnd(nsArgv(ctx.tb, 'client', ['ss', '-Htn', 'state', 'established', '( dport = :22 )']), { timeoutMs: 10_000 })
  return r.code === 0 ? r.stdout.split('\n').filter((l) => l.trim()).length : undefined
}

/** Opens n connections through target and holds them; resolves the row's metrics. */
async function holdThrough(ctx, c, target, n, notes) {
  await sleep(500) // let start-up garbage settle
  const idle = treeRss(target.handle.pid)
  const holder = await startDaemon(
    nsArgv(ctx.tb, 'client', withNofile([process.execPath, NET_CLIENT, 'hold', target.host, String(target.port), String(n)], NOFILE)),
    { label: `hold ${n} conns`, ready: /^held ok=/m, readyTimeoutMs: 180_000 },
  )
  try {
    const m = /held ok=(\d+) failed=(\d+)/.exec(holder.output)
    const held = Number(m[1])
    if (Number(m[2]) > 0) {
      notes.push(`memory ${n} ${c.label}: ${m[2]} of ${n} connections failed`)
      if (c.kind === 'ours') {
        // Why, in its own words: how far the pool grew, and the channel-open failures it saw
        // (the output kept is the last 64 KiB: enough for the pattern, not for a count).
        const lines = target.handle.output.split('\n')
        const grew = lines.filter((l) => /SSH connection/.test(l)).pop()
        const failed = lines.filter((l) => /ssh: open /.test(l)).pop()
        for (const l of [grew, failed]) if (l) notes.push(`memory ${n} ${c.label}: log: ${l.trim().slice(0, 240)}`)
      }
    }
    const alive = isRunning(target.handle.pid)
    if (!alive) {
      // Its RSS would read 0: report none, and what it said before it went.
      const last = target.handle.output.trim().split('\n').slice(-2).join(' | ').slice(0, 300)
      notes.push(`memory ${n} ${c.label}: the contender exited while the connections were opened (its held ones were counted before); last output: ${last}`)
    }
    const mb = (bytes) => (alive ? bytes / 2 ** 20 : undefined)
    return {
      rssMB: mb(treeRss(target.handle.pid)), idleRssMB: idle / 2 ** 20, mainRssMB: mb(treeRss(target.handle.pid, true)),
      pssMB: mb(treePss(target.handle.pid)),
      held, okPct: (100 * held) / n, sshConns: await sshConnections(ctx),
    }
  } finally {
    await holder.stop()
  }
}

async function run(ctx) {
  const rows = []
  const ns = counts(ctx.quick)
  const limit = sshdNofile(ctx.tb)
  const notes = [
    `memory: the bastion's sshd runs with a soft limit of ${limit || 'unknown'} open files; the contenders, the connecting client and the echo server with ${Math.min(NOFILE, hardNofile())}.`,
  ]
  if (hardNofile() < Math.max(...ns) + 100) notes.push(`memory: this shell's hard open-files limit (${hardNofile()}) is below ${Math.max(...ns)}: the client side, not the tunnel, may be the limit`)
  const echo = await startDaemon(
    nsArgv(ctx.tb, 'private', withNofile([process.execPath, NET_CLIENT, 'echo', ctx.tb.privateIp, String(ECHO_PORT)], NOFILE)),
    { label: `echo server :${ECHO_PORT}`, ready: /^listening /m, readyTimeoutMs: 10_000 },
  )
  try {
    await withRtt(ctx, 0, async (alias) => {
      for (const n of ns) {
        for (const c of tcpContenders(ctx, { nofile: NOFILE, ours: oursOf(ctx, 'memory') })) {
          await withContender(c, alias, ECHO_PORT, async (target) => {
            const metrics = await holdThrough(ctx, c, target, n, notes)
            rows.push(row('memory', `${n.toLocaleString('en-US')} idle conns held`, 0, c, metrics))
            const held = metrics.rssMB === undefined ? 'exited' : `${metrics.rssMB.toFixed(1)} MB`
            ctx.progress(`memory ${c.label}: ${metrics.held}/${n} held over ${metrics.sshConns} SSH conn(s), RSS ${metrics.idleRssMB.toFixed(1)} MB → ${held}`)
          })
        }
      }
    })
  } finally {
    await echo.stop()
  }
  return { rows, notes, checks: checks(rows) }
}

/** The targets: 1,000 connections in < 120 MB; 10,000 all held in < 300 MB. */
function checks(rows) {
  const out = []
  const ours = (n) => rows.find((r) => r.contender === 'subnet-tunnel' && r.test.startsWith(`${n.toLocaleString('en-US')} `))
  for (const [n, mb] of [[1000, 120], [10000, 300]]) {
    const r = ours(n)
    if (!r) continue
    const what = `${n.toLocaleString('en-US')} concurrent connections`
    out.push({ what: `${what}: all held`, value: `${r.metrics.held} of ${n}`, ok: r.metrics.held === n })
    const fig = (v) => (v === undefined ? 'exited' : `${v.toFixed(1)} MB`)
    out.push({ what: `${what}: RSS < ${mb} MB (process tree)`, value: fig(r.metrics.rssMB), ok: r.metrics.rssMB < mb })
    out.push({ what: `${what}: RSS < ${mb} MB (main process)`, value: fig(r.metrics.mainRssMB), ok: r.metrics.mainRssMB < mb })
    out.push({ what: `${what}: PSS < ${mb} MB (process tree, shared pages once)`, value: fig(r.metrics.pssMB), ok: r.metrics.pssMB < mb })
  }
  return out
}

module.exports = {
  name: 'memory',
  tools: ['sshuttle', 'ss'],
  columns,
  primary: 'rssMB',
  alsoRatio: ['held'],
  describe: (quick) =>
    `memory: ${counts(quick).map((n) => n.toLocaleString('en-US')).join(' and ')} connections to an echo server on the private host, each echoes one line, then held idle; ` +
    "RSS of the contender's process tree (idle: before) and of its main process; PSS of the tree (pages shared between its processes, such as the node binary, counted once); SSH conns: to the bastion while held; RTT 0",
  run,
  sshHosts: () => tcpSshHosts([0]),
}
