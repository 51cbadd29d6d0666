'use strict'
/**
 * Child processes for the bench. Long-running ones (tunnels, relays) are tracked: each is
 * stopped by its pid — and its descendants by theirs — from the cleanup stack. `ip netns exec`
 * execs its command, so the pid we get is the tool's own.
 */
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const { onCleanup } = require('./cleanup')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Pids of all descendants of pid, from /proc (children first). */
function descendantsOf(pid) {
  const children = new Map()
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    let stat
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8')
    } catch {
      continue
    }
    // comm (field 2) may hold spaces and parentheses: ppid is the 2nd field after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (!children.has(ppid)) children.set(ppid, [])
    children.get(ppid).push(Number(e))
  }
  const out = []
  const queue = [pid]
  while (queue.length) for (const c of children.get(queue.shift()) || []) out.push(c), queue.push(c)
  return out
}

/** Start time of pid (field 22 of /proc/PID/stat, ticks since boot), undefined once it is gone. */
function startTimeOf(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** True while pid exists and is not a zombie (a zombie has exited; only its parent's wait is due). */
function isRunning(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    return false
  }
}

function killQuietly(pid, sig) {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

/**
 * Starts argv in the background and resolves once `ready` (a RegExp) matches its stdout or
 * stderr. Output is kept (last 64 KiB) for error messages. The returned handle's stop() sends
 * SIGTERM, waits up to graceMs for a clean exit (sshuttle and subnet-tunnel remove their rules
 * on SIGTERM), then SIGKILLs the process and whatever it started. afterStop (optional) runs
 * once everything is gone — also when the start failed, since a half-started tool can leave
 * rules behind too; it must not throw.
 */
async function startDaemon(argv, { label, ready, readyTimeoutMs = 30_000, graceMs = 8_000, env, afterStop } = {}) {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env })
  let output = ''
  let exited = null
  const exitP = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve((exited = { code, signal })))
    child.on('error', (e) => resolve((exited = { code: null, signal: null, error: e })))
  })
  const keep = (b) => {
    output = (output + b.toString()).slice(-65536)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const handle = {
    pid: child.pid,
    label,
    get output() {
      return output
    },
    stop: null,
  }
  // Every descendant seen (pid → start time): a tool that exits by itself re-parents its
  // children to init, where the parent pid no longer finds them. The start time makes sure a
  // pid reused by someone else's process is never signalled.
  const seen = new Map()
  const remember = () => {
    for (const p of descendantsOf(child.pid)) if (!seen.has(p)) seen.set(p, startTimeOf(p))
  }
  handle.remember = remember
  handle.stop = onCleanup(`stop ${label}`, async () => {
    if (!exited) {
      // Collected before the signal: once the parent dies its children are re-parented.
      remember()
      killQuietly(child.pid, 'SIGTERM')
      const clean = await Promise.race([exitP.then(() => true), sleep(graceMs).then(() => false)])
      if (!clean) killQuietly(child.pid, 'SIGKILL')
    }
    // Helpers may outlive the main process on purpose: sshuttle's firewall child restores its
    // rules when its parent is gone. Give them the rest of the grace time, then SIGKILL.
    const family = () => [...seen].filter(([p, t]) => t !== undefined && startTimeOf(p) === t && isRunning(p)).map(([p]) => p)
    const deadline = Date.now() + graceMs
    while (Date.now() < deadline && family().length) await sleep(50)
    for (const p of family()) killQuietly(p, 'SIGKILL')
    await Promise.race([exitP, sleep(2_000)])
    if (afterStop) await afterStop(handle)
  })
  const deadline = Date.now() + readyTimeoutMs
  // Not remembered while waiting, nor at ready: scanning /proc takes CPU from the start-up
  // being measured. Callers call handle.remember() once nothing is measured (tcp-util.js
  // withContender right after the start), and stop() does before its signal.
  while (!ready.test(output)) {
    if (exited || Date.now() > deadline) {
      await handle.stop()
      const why = exited ? `exited (${exited.error ? exited.error.message : `code ${exited.code}, signal ${exited.signal}`})` : `not ready within ${readyTimeoutMs} ms`
      throw new Error(`${label} ${why}\n  argv: ${argv.join(' ')}\n  output:\n${output.trim().slice(-3000)}`)
    }
    await sleep(20)
  }
  return handle
}

/**
 * Runs argv to completion; resolves { code, signal, stdout, stderr }. onLine (optional) sees
 * each stdout line as it arrives and returns true when it consumed it: consumed lines are not
 * kept in stdout, so millions of them cost no memory. SIGKILL after timeoutMs. Never rejects on a non-zero exit.
 */
function runToEnd(argv, { timeoutMs = 60_000, onLine } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    const forget = onCleanup(`kill ${argv[0]}`, () => killQuietly(child.pid, 'SIGKILL'))
    let stdout = ''
    let stderr = ''
    let partial = ''
    child.stdout.on('data', (b) => {
      if (!onLine) return void (stdout += b)
      const lines = (partial + b.toString()).split('\n')
      partial = lines.pop()
      for (const l of lines) if (!onLine(l)) stdout += l + '\n'
    })
    child.stderr.on('data', (b) => (stderr += b))
    const timer = setTimeout(() => killQuietly(child.pid, 'SIGKILL'), timeoutMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      forget.drop()
      reject(e)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (onLine && partial && !onLine(partial)) stdout += partial
      // The process is gone: drop its cleanup step without killing a pid that may be reused.
      forget.drop()
      resolve({ code, signal, stdout, stderr })
    })
  })
}

module.exports = { startDaemon, runToEnd, descendantsOf, isRunning, startTimeOf, sleep }
