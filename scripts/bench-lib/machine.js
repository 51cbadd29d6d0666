'use strict'
/** A one-line description of the machine and tool versions, printed with every result. */
const fs = require('node:fs')
const os = require('node:os')
const { runToEnd } = require('./proc')

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

/** { nproc, cpu, kernel, os, memGiB, versions: {…} } */
async function describeMachine() {
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
    versions: {
      node: process.version,
      openssh: await versionOf(['ssh', '-V']),
      sshuttle: await versionOf(['sshuttle', '--version']),
      dnsperf: await versionOf(['dnsperf', '-h'], (s) => (/Version ([0-9.]+)/.exec(s) || [])[1]),
    },
  }
}

function machineLine(m) {
  const v = m.versions
  return (
    `machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.memGiB} GiB, ${m.kernel}, ${m.os}\n` +
    `tools:   node ${v.node}, ${v.openssh}, sshuttle ${v.sshuttle}, dnsperf ${v.dnsperf}`
  )
}

module.exports = { describeMachine, machineLine }
