'use strict'
/**
 * Did the bench leave anything behind? Two checks besides the per-stop rule check
 * (contenders.js leftoverCheck):
 *  - processes: the pids in the testbed's namespaces right after it came up (sshd, dnsmasq,
 *    iperf3, the HTTP server) are the baseline; once every suite has stopped what it started,
 *    any other pid still in a namespace is ours and left over (found by namespace, not name);
 *  - after teardown: the namespaces, the testbed's state directory and the bench's temp dir
 *    are gone.
 */
const fs = require('node:fs')
const path = require('node:path')
const { runToEnd, sleep } = require('./proc')
const { BASE_DIR } = require('./testbed')

/** `ip netns pids NS` output → pids. */
function parsePids(text) {
  return (text || '').split('\n').map((l) => l.trim()).filter((l) => /^\d+$/.test(l)).map(Number)
}

/** Pids in `now` (role → pids) that were not in `baseline`: { role, pid }[] (pure). */
function newPids(baseline, now) {
  const out = []
  for (const [role, pids] of Object.entries(now)) {
    const before = new Set(baseline[role] || [])
    for (const pid of pids) if (!before.has(pid)) out.push({ role, pid })
  }
  return out
}

/** role → pids of the processes in each testbed namespace now. */
async function pidsByNamespace(tb) {
  const out = {}
  for (const [role, ns] of Object.entries(tb.ns)) {
    const r = await runToEnd(['ip', 'netns', 'pids', ns], { timeoutMs: 10_000 })
    if (r.code !== 0) throw new Error(`ip netns pids ${ns}: ${r.stderr.trim()}`)
    out[role] = parsePids(r.stdout)
  }
  return out
}

function commandOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 160)
  } catch {
    return '?'
  }
}

/**
 * Processes in the namespaces that were not there at the start, after up to `waitMs` for them
 * to go (sshd's per-connection children take a moment after their client is gone).
 * @returns [{ role, pid, command }]
 */
async function leftoverProcesses(tb, baseline, waitMs = 5000) {
  const deadline = Date.now() + waitMs
  for (;;) {
    const extra = newPids(baseline, await pidsByNamespace(tb))
    if (extra.length === 0 || Date.now() > deadline) return extra.map((x) => ({ ...x, command: commandOf(x.pid) }))
    await sleep(250)
  }
}

/** What is still there after teardown: descriptions (empty: clean). */
function afterTeardown(tb, name, dir) {
  const left = []
  for (const ns of Object.values(tb ? tb.ns : {})) if (fs.existsSync(`/run/netns/${ns}`)) left.push(`namespace ${ns}`)
  if (name && fs.existsSync(path.join(BASE_DIR, name))) left.push(`testbed state ${path.join(BASE_DIR, name)}`)
  if (dir && fs.existsSync(dir)) left.push(`temp dir ${dir}`)
  return left
}

module.exports = { parsePids, newPids, pidsByNamespace, leftoverProcesses, afterTeardown }
