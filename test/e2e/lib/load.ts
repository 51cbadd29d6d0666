/**
 * Tools of the load tests: the scripts load-server.js / load-client.js run as child processes
 * that talk JSON lines, and readings of the tunnel process (fds, RSS, status) and of the bastion
 * (SSH connections, sshd fds).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { runCli } from './cli'
import { describeRun, run } from './exec'
import { sshdPids } from './faults'
import { readJsonLines, type Ev } from './json-lines'
import type { Role, Testbed } from './testbed'

export type { Ev }

const procs = new Set<ChildProcess>()

/** A node script in a namespace whose stdout is JSON lines; events are kept in order. */
export class JsonProc {
  readonly events: Ev[] = []
  private err = ''
  private readonly exited: Promise<number | null>

  private constructor(private readonly child: ChildProcess) {
    procs.add(child)
    readJsonLines(
      child,
      (ev) => this.events.push(ev),
      (text) => (this.err += text),
    )
    this.exited = new Promise((r) =>
      child.on('close', (code) => {
        procs.delete(child)
        r(code)
      }),
    )
  }

  /** Starts `node <lib/script> args…` in a namespace. */
  static start(tb: Testbed, role: Role, script: string, args: readonly (string | number)[]): JsonProc {
    const argv = tb.nsArgv(role, [process.execPath, path.join(__dirname, script), ...args.map(String)])
    return new JsonProc(spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }))
  }

  get pid(): number {
    return this.child.pid!
  }

  /** Resolves with the first event named ev (waiting up to withinMs); rejects with stderr otherwise. */
  async next(ev: string, withinMs: number): Promise<Ev> {
    const deadline = Date.now() + withinMs
    let exited = false
    void this.exited.then(() => (exited = true))
    for (;;) {
      const hit = this.events.find((e) => e.ev === ev)
      if (hit) return hit
      if (exited || Date.now() > deadline) {
        throw new Error(`${exited ? 'exited' : `no "${ev}" within ${withinMs} ms`}; events ${JSON.stringify(this.events)}; stderr ${this.err}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n')
  }

  /** Closes stdin (the scripts exit on it), SIGKILL after 5 s. */
  async stop(): Promise<void> {
    this.child.stdin!.end()
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await this.exited
    clearTimeout(t)
  }
}

/** SIGKILLs every script still running (afterAll safety net). */
export function killAllProcs(): void {
  for (const c of procs) c.kill('SIGKILL')
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/** Resident set size in MB (VmRSS). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 102.4) / 10 : NaN
}

/** Soft and hard open-files limits of a process, from /proc/PID/limits. */
export function nofile(pid: number): { soft: number; hard: number } {
  const m = /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  return { soft: Number(m?.[1]), hard: Number(m?.[2]) }
}

export interface InstanceStatus {
  pid: number
  remotes: { name: string; state: string; channelsOpen: number; sshConnections?: number }[]
  totals: { active: number; total: number; failed: number; bytesUp: number; bytesDown: number }
  connections: { dst: string; bytesUp: number; bytesDown: number }[]
}

/** `subnet-tunnel status --json` (control socket), the entry of the instance with this pid. */
export async function statusOf(tb: Testbed, pid: number): Promise<InstanceStatus> {
  const r = await runCli(tb, ['status', '--json'])
  if (r.code !== 0) throw new Error(`status --json: ${describeRun(r)}`)
  const me = (JSON.parse(r.stdout) as InstanceStatus[]).find((i) => i.pid === pid)
  if (!me) throw new Error(`status --json does not list pid ${pid}: ${r.stdout.slice(0, 500)}`)
  return me
}

/** Established TCP connections to the bastion's sshd (one per SSH connection of the pool). */
export async function sshConnections(tb: Testbed): Promise<number> {
  const r = await run(tb.nsArgv('bastion', ['ss', '-Htn', 'state', 'established', '( sport = :22 )']))
  return r.stdout.split('\n').filter(Boolean).length
}

/** Open fds of each sshd process in the bastion (listener and one per SSH connection). */
export async function sshdFds(tb: Testbed): Promise<number[]> {
  const out: number[] = []
  for (const pid of await sshdPids(tb)) {
    try {
      out.push(fdCount(pid))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/** Polls check() every 250 ms until it returns true or withinMs passes; returns the last value. */
export async function until(check: () => Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 250))
  }
}
