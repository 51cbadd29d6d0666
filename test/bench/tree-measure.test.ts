import { describe, it, expect, afterEach } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { treeCpuTicks, cpuSecondsBetween } = require('../../scripts/bench-lib/tree-measure.js')

// A child that waits 300 ms (time for the "before" reading), burns 300 ms of its own CPU, says
// "done", then idles: like an `ssh -M` master carrying the bytes while its parent waits.
const BURNER = `
  setTimeout(() => {
    const start = process.cpuUsage()
    for (;;) { const u = process.cpuUsage(start); if (u.user + u.system > 300000) break }
    process.stdout.write('done\\n')
    setInterval(() => {}, 1000)
  }, 300)`
const PARENT = `
  const { spawn } = require('node:child_process')
  const c = spawn(process.execPath, ['-e', ${JSON.stringify(BURNER)}], { stdio: ['ignore', 'inherit', 'inherit'] })
  process.stdout.write('child ' + c.pid + '\\n')
  setInterval(() => {}, 1000)`

// Pids this file started (the grandchild outlives a SIGKILLed parent: it is killed by pid too).
const started: number[] = []
afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
})

/** Spawns node -e code; resolves once its stdout matched every pattern in turn. */
function waitFor(p: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = ''
    const on = (b: Buffer) => {
      out += b
      const m = pattern.exec(out)
      if (m) {
        p.stdout!.off('data', on)
        resolve(m)
      }
    }
    p.stdout!.on('data', on)
    p.on('exit', () => reject(new Error(`exited before ${pattern}: ${out}`)))
  })
}

describe('treeCpuTicks: a contender is its whole process tree, found by parent pid', () => {
  it("counts a child's CPU (the openssh engine's master) and not an unrelated busy process", async () => {
    const parent = spawn(process.execPath, ['-e', PARENT], { stdio: ['ignore', 'pipe', 'inherit'] })
    // Same program, not our child: it must not count, whatever its name.
    const stranger = spawn(process.execPath, ['-e', BURNER], { stdio: ['ignore', 'pipe', 'inherit'] })
    started.push(parent.pid!, stranger.pid!)
    const childPid = Number((await waitFor(parent, /child (\d+)/))[1])
    started.push(childPid)
    const before = treeCpuTicks(parent.pid)
    expect([...before.keys()]).toEqual(expect.arrayContaining([parent.pid, childPid]))
    expect(before.has(stranger.pid)).toBe(false)
    await Promise.all([waitFor(parent, /done/), waitFor(stranger, /done/)])
    const after = treeCpuTicks(parent.pid)
    const total = cpuSecondsBetween(before, after)
    const parentAlone = cpuSecondsBetween(new Map([[parent.pid, before.get(parent.pid)]]), new Map([[parent.pid, after.get(parent.pid)]]))
    expect(total).toBeGreaterThanOrEqual(0.25)
    expect(total).toBeLessThan(0.6) // the stranger's 0.3 s is not in it
    expect(parentAlone).toBeLessThan(0.1)
  })
})
