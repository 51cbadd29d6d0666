'use strict'
/**
 * The machine a run happened on, printed in the header and stored in the JSON: CPU model and
 * count, how idle the CPUs were just before the run (other tenants of a shared VM show up
 * here), steal time (the hypervisor giving our vCPUs to someone else), load average, kernel,
 * and the versions of node, OpenSSH and sshuttle. Figures from a busy or stolen-from machine
 * are not comparable with a quiet one's; this is how a reader tells.
 */
const fs = require('node:fs')
const os = require('node:os')
const { runToEnd, sleep } = require('./proc')

function firstLine(s) {
  return (s || '').trim().split('\n')[0].trim()
}

async function versionOf(argv, pick = firstLine) {
  try {
    const r = await runToEnd(argv, { timeoutMs: 10_000 })
    return pick(r.stdout + '\n' + r.stderr) || 'unknown'
  } catch {
    return 'not installed'
  }
}

const CPU_FIELDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', 'guest', 'guestNice']

/** The aggregate "cpu " line of a /proc/stat text → { user, nice, …, steal } in ticks. */
function parseProcStat(text) {
  const m = /^cpu\s+([\d\s]+)$/m.exec(text || '')
  if (!m) throw new Error('/proc/stat: no aggregate cpu line')
  const v = m[1].trim().split(/\s+/).map(Number)
  const out = {}
  CPU_FIELDS.forEach((f, i) => (out[f] = v[i] || 0))
  return out
}

/**
 * Shares of CPU time between two parseProcStat samples, in %: idle (idle + iowait: a CPU
 * waiting for disk could run us), steal, and busy (the rest). guest/guestNice are already
 * inside user/nice, so they are not added to the total.
 */
function cpuShares(a, b) {
  const d = (f) => b[f] - a[f]
  const total = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'].reduce((s, f) => s + d(f), 0)
  if (!(total > 0)) return { idlePct: undefined, stealPct: undefined, busyPct: undefined }
  const pct = (x) => (100 * x) / total
  const idle = d('idle') + d('iowait')
  return { idlePct: pct(idle), stealPct: pct(d('steal')), busyPct: pct(total - idle - d('steal')) }
}

function readProcStat() {
  return parseProcStat(fs.readFileSync('/proc/stat', 'utf8'))
}

/** Idle and steal % over `ms` from now (the bench samples ~2 s before anything starts). */
async function sampleCpu(ms = 2000) {
  const a = readProcStat()
  await sleep(ms)
  return { ...cpuShares(a, readProcStat()), seconds: ms / 1000 }
}

/**
 * { nproc, cpu, kernel, os, memGiB, load: [1, 5, 15 min], before: { idlePct, stealPct, busyPct,
 * seconds }, versions: {…} }. The CPU sample is taken first, while the bench itself is idle.
 */
async function describeMachine({ sampleMs = 2000 } = {}) {
  const before = await sampleCpu(sampleMs)
  const load = os.loadavg()
  const cpu = (os.cpus()[0] && os.cpus()[0].model.trim()) || 'unknown CPU'
  let distro = os.type()
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))
    if (m) distro = m[1]
  } catch {
    // not Linux-like: keep os.type()
  }
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpu,
    kernel: `${os.type()} ${os.release()}`,
    os: distro,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    load,
    before,
    versions: {
      node: process.version,
      openssh: await versionOf(['ssh', '-V']),
      sshuttle: await versionOf(['sshuttle', '--version']),
      dnsperf: await versionOf(['dnsperf', '-h'], (s) => (/Version ([0-9.]+)/.exec(s) || [])[1]),
    },
  }
}

/** A whole-run reading to pair with one at the end (stealDuring). */
function startStealWatch() {
  const a = readProcStat()
  return () => cpuShares(a, readProcStat()).stealPct
}

const pctText = (x) => (x === undefined ? '?' : `${x.toFixed(1)} %`)

/** The header lines about the machine (pure). */
function machineLines(m) {
  const v = m.versions
  const load = (m.load || []).map((x) => x.toFixed(2)).join(' ')
  const b = m.before || {}
  const lines = [
    `machine: ${m.cpu}, ${m.nproc} CPUs (nproc), ${m.memGiB} GiB, ${m.kernel}, ${m.os}`,
    `before:  CPU idle ${pctText(b.idlePct)}, steal ${pctText(b.stealPct)} (over ${b.seconds ?? '?'} s of /proc/stat); load average ${load}`,
    `tools:   node ${v.node}, ${v.openssh}, sshuttle ${v.sshuttle}, dnsperf ${v.dnsperf}`,
  ]
  if (m.stealDuringPct !== undefined) lines.push(`during:  steal ${pctText(m.stealDuringPct)} of CPU time over the whole run`)
  return lines
}

module.exports = { parseProcStat, cpuShares, sampleCpu, describeMachine, startStealWatch, machineLines }
