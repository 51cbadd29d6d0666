'use strict'
/**
 * What a contender's process tree costs: memory (RSS, PSS) and CPU time, read from /proc.
 *
 * The tree is found by parent pid at the moment of each reading, never by process name: all of
 * a contender's client-side processes count — subnet-tunnel's main process, its privileged
 * helper and, with the OpenSSH engine, its `ssh -M` master (which carries every byte);
 * ssh -L's ssh; sshuttle's python client, its ssh and its firewall helper. Other people's
 * processes with the same names on this shared machine are never counted.
 */
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const { descendantsOf } = require('./proc')
const { parseVmRss, parsePss, parseStatCpuTicks } = require('./perf-parse')

function sumOverTree(pid, alone, read) {
  let total = 0
  for (const p of alone ? [pid] : [pid, ...descendantsOf(pid)]) {
    try {
      total += read(p) || 0
    } catch {
      // exited meanwhile
    }
  }
  return total
}

/**
 * Sum of VmRSS (bytes) of pid and, unless `alone`, its descendants (sshuttle's ssh and firewall
 * helper, subnet-tunnel's privileged helper count: the tool needs them all).
 */
function treeRss(pid, alone = false) {
  return sumOverTree(pid, alone, (p) => parseVmRss(fs.readFileSync(`/proc/${p}/status`, 'utf8')))
}

/** Like treeRss, with PSS: pages shared inside the tree (the node binary, libraries) count once. */
function treePss(pid) {
  return sumOverTree(pid, false, (p) => parsePss(fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8')))
}

let clockTicks
/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK; 100 on every Linux we know). */
function ticksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/**
 * CPU time so far (utime + stime) of pid and its descendants at this moment: a Map pid →
 * clock ticks.
 */
function treeCpuTicks(pid) {
  const out = new Map()
  for (const p of [pid, ...descendantsOf(pid)]) {
    try {
      out.set(p, parseStatCpuTicks(fs.readFileSync(`/proc/${p}/stat`, 'utf8')))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/**
 * CPU seconds spent between two treeCpuTicks snapshots: a process new in `after` (a master
 * started meanwhile) counts from zero; one gone by then is lost — none of the contenders'
 * processes come and go per stream or per connection.
 */
function cpuSecondsBetween(before, after) {
  let ticks = 0
  for (const [p, t] of after) ticks += t - (before.get(p) || 0)
  return ticks / ticksPerSecond()
}

module.exports = { treeRss, treePss, treeCpuTicks, cpuSecondsBetween, ticksPerSecond }
