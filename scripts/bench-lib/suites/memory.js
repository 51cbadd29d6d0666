'use strict'
/**
 * Memory with idle connections held (issue 5): N connections through each contender to the
 * private host's echo server (:9000), each proven with one echoed line, then held idle; the
 * RSS of the contender's process tree (sshuttle: with its ssh and firewall helper; subnet-tunnel:
 * with its privileged helper; ssh -L: the ssh process) is read while they are all open, and the
 * main process's alone. RTT 0.
 */
const fs = require('node:fs')
const path = require('node:path')
const { startDaemon } = require('../proc')
const { nsArgv } = require('../testbed')
const { tcpContenders, tcpSshHosts, treeRss } = require('../contenders')
const { withRtt, withContender, row, NET_CLIENT } = require('./tcp-util')

const columns = [
  { key: 'rssMB', label: 'RSS MB held', digits: 1, better: 'lower' },
  { key: 'idleRssMB', label: 'RSS MB idle', digits: 1, better: 'lower' },
  { key: 'mainRssMB', label: 'main proc MB held', digits: 1, better: 'lower' },
  { key: 'held', label: 'conns held', digits: 0, better: 'higher' },
]
const connections = (quick) => (quick ? 200 : 1000)

/** The soft open-files limit of the testbed's sshd (its listener; sessions inherit it). */
function sshdNofile(tb) {
  try {
    const pid = fs.readFileSync(path.join(tb.dir, 'sshd.pid'), 'utf8').trim()
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))
    return m ? m[1] : undefined
  } catch {
    return undefined
  }
}

async function run(ctx) {
  const rows = []
  const n = connections(ctx.quick)
  const limit = sshdNofile(ctx.tb)
  const notes = [
    `memory: the testbed's sshd runs with this machine's soft open-files limit (${limit || 'unknown'}), not the 1,024 a stock systemd bastion has, so ${n} connections fit in one SSH session.`,
  ]
  await withRtt(ctx, 0, async (alias) => {
    for (const c of tcpContenders(ctx)) {
      await withContender(c, alias, Number(ctx.tb.echoPort), async (target) => {
        await new Promise((r) => setTimeout(r, 500)) // let start-up garbage settle
        const idle = treeRss(target.handle.pid)
        const holder = await startDaemon(
          nsArgv(ctx.tb, 'client', [process.execPath, NET_CLIENT, 'hold', target.host, String(target.port), String(n)]),
          { label: `hold ${n} conns`, ready: /^held ok=/m, readyTimeoutMs: 120_000 },
        )
        try {
          const m = /held ok=(\d+) failed=(\d+)/.exec(holder.output)
          const held = Number(m[1])
          if (Number(m[2]) > 0) notes.push(`memory ${c.label}: ${m[2]} of ${n} connections failed`)
          const rss = treeRss(target.handle.pid)
          const main = treeRss(target.handle.pid, true)
          const metrics = { rssMB: rss / 2 ** 20, idleRssMB: idle / 2 ** 20, mainRssMB: main / 2 ** 20, held }
          rows.push(row('memory', `${n} idle conns held`, 0, c, metrics))
          ctx.progress(`memory ${c.label}: ${held}/${n} held, RSS ${metrics.idleRssMB.toFixed(1)} → ${metrics.rssMB.toFixed(1)} MB`)
        } finally {
          await holder.stop()
        }
      })
    }
  })
  const ours = rows.find((r) => r.contender === 'subnet-tunnel')
  const checks = []
  if (ours && n === 1000) {
    checks.push({ what: '1,000 concurrent connections: RSS < 120 MB (process tree)', value: `${ours.metrics.rssMB.toFixed(1)} MB`, ok: ours.metrics.rssMB < 120 })
    checks.push({ what: '1,000 concurrent connections: RSS < 120 MB (main process)', value: `${ours.metrics.mainRssMB.toFixed(1)} MB`, ok: ours.metrics.mainRssMB < 120 })
    checks.push({ what: '1,000 concurrent connections: all held', value: `${ours.metrics.held}`, ok: ours.metrics.held === n })
  }
  return { rows, notes, checks }
}

module.exports = {
  name: 'memory',
  tools: ['sshuttle'],
  columns,
  primary: 'rssMB',
  describe: (quick) =>
    `memory: ${connections(quick)} connections to the private echo server, each echoes one line, then held idle; RSS of the contender's process tree (idle: before) and of its main process, RTT 0`,
  run,
  sshHosts: () => tcpSshHosts([0]),
}
