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
const { tcpContenders, tcpSshHosts, withNofile, hardNofile } = require('../contenders')
const { treeRss, treePss } = require('../tree-measure')
const { parseNofileLimits } = require('../perf-parse')
const { withRtt, startServerOnPort0, withContender, rowOf, NET_CLIENT, oursOf } = require('./tcp-util')

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
async function holdThrough(ctx, c, target, n, round) {
  const notes = ctx.notes
  const who = `memory ${n} ${c.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}`
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
      notes.push(`${who}: ${m[2]} of ${n} connections failed`)
      if (c.kind === 'ours') {
        // Why, in its own words: how far the pool grew, and the channel-open failures it saw
        // (the output kept is the last 64 KiB: enough for the pattern, not for a count).
        const lines = target.handle.output.split('\n')
        const grew = lines.filter((l) => /SSH connection/.test(l)).pop()
        const failed = lines.filter((l) => /ssh: open /.test(l)).pop()
        for (const l of [grew, failed]) if (l) notes.push(`${who}: log: ${l.trim().slice(0, 240)}`)
      }
    }
    const alive = isRunning(target.handle.pid)
    if (!alive) {
      // Its RSS would read 0: report none, and what it said before it went.
      const last = target.handle.output.trim().split('\n').slice(-2).join(' | ').slice(0, 300)
      notes.push(`${who}: the contender exited while the connections were opened (its held ones were counted before); last output: ${last}`)
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

/** Sockets a process has open (fds pointing at sockets), or 0 when unreadable. */
function openSockets(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')
      } catch {
        return false
      }
    }).length
  } catch {
    return 0
  }
}

async function run(ctx) {
  const ns = counts(ctx.quick)
  const limit = sshdNofile(ctx.tb)
  ctx.notes.push(`memory: the bastion's sshd runs with a soft limit of ${limit || 'unknown'} open files; the contenders, the connecting client and the echo server with ${Math.min(NOFILE, hardNofile())}.`)
  if (hardNofile() < Math.max(...ns) + 100) ctx.notes.push(`memory: this shell's hard open-files limit (${hardNofile()}) is below ${Math.max(...ns)}: the client side, not the tunnel, may be the limit`)
  // Our own echo server (the testbed's spends a thread per connection), on a port it picks.
  const echo = await startServerOnPort0(nsArgv(ctx.tb, 'private', withNofile([process.execPath, NET_CLIENT, 'echo', ctx.tb.privateIp, '0'], NOFILE)), 'echo server')
  try {
    await withRtt(ctx, 0, async (alias) => {
      const contenders = tcpContenders(ctx, { nofile: NOFILE, ours: oursOf(ctx, 'memory') })
      for (const n of ns) {
        for (let round = 1; round <= (ctx.repeat || 1); round++) {
          for (const c of contenders) {
            const id = rowOf('memory', `${n.toLocaleString('en-US')} idle conns held`, 0, c)
            await withContender(ctx, c, alias, echo.port, round, [id], async (target) => {
              const before = openSockets(echo.handle.pid)
              if (before > 16) ctx.notes.push(`memory ${n} ${c.label} (round ${round}): the echo server still held ${before} sockets from earlier rows when it started`)
              const metrics = await holdThrough(ctx, c, target, n, round)
              ctx.book.record(id, round, metrics)
              const held = metrics.rssMB === undefined ? 'exited' : `${metrics.rssMB.toFixed(1)} MB`
              ctx.progress(`memory ${c.label}${ctx.repeat > 1 ? ` (round ${round})` : ''}: ${metrics.held}/${n} held over ${metrics.sshConns} SSH conn(s), RSS ${metrics.idleRssMB.toFixed(1)} MB → ${held}`)
            })
          }
        }
      }
    })
  } finally {
    await echo.handle.stop()
  }
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
  sshHosts: (rtts, relayPorts) => tcpSshHosts([0], relayPorts),
}
