/**
 * Fault injection for the end-to-end tests: kill and restart the bastion's sshd, take the
 * client–bastion link down, make a private address drop SYNs, snapshot the client's firewall,
 * hold connections open through the tunnel and read the CLI's timestamped log lines. Everything
 * here acts inside a testbed's own namespaces only.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describeRun, run } from './exec'
import { dumpFirewall } from './firewall'
import { readJsonLines } from './json-lines'
import type { Testbed } from './testbed'

/** Pids of every sshd in the bastion namespace (the listener and one process per session). */
export async function sshdPids(tb: Testbed): Promise<number[]> {
  return (await tb.pids('bastion')).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('sshd')
    } catch {
      return false // exited meanwhile
    }
  })
}

/** SIGKILLs every sshd of the bastion (not its resolver stub) and waits until they are gone. */
export async function killSshd(tb: Testbed): Promise<number[]> {
  const pids = await sshdPids(tb)
  for (const pid of pids) process.kill(pid, 'SIGKILL')
  const deadline = Date.now() + 5_000
  while ((await sshdPids(tb)).length > 0) {
    if (Date.now() > deadline) throw new Error('sshd did not die')
    await new Promise((r) => setTimeout(r, 50))
  }
  return pids
}

/**
 * Starts sshd again with the testbed's config and host key. Daemon mode: sshd binds before the
 * parent exits, so the port listens when this resolves; `testbed down` kills it with the rest
 * of the namespace.
 */
export async function startSshd(tb: Testbed): Promise<void> {
  const r = await run(tb.nsArgv('bastion', ['/usr/sbin/sshd', '-f', path.join(tb.env.dir, 'sshd_config')]))
  if (r.code !== 0) throw new Error(`sshd restart: ${describeRun(r)}`)
}

/** Takes the bastion's end of the client–bastion veth (b0) down or up. */
export async function setBastionLink(tb: Testbed, up: boolean): Promise<void> {
  const r = await run(['ip', '-n', tb.ns('bastion'), 'link', 'set', 'b0', up ? 'up' : 'down'])
  if (r.code !== 0) throw new Error(`link ${up ? 'up' : 'down'}: ${describeRun(r)}`)
}

/**
 * The client moves to another network, as a laptop does between Wi-Fi networks: its link goes
 * down (every route through it goes), its IPv4 address changes, the link comes up and the
 * default route returns. Resolves with the epoch ms at which the new route was in place.
 */
export async function moveClient(tb: Testbed, from: string, to: string): Promise<number> {
  const ip = (...a: string[]) => run(['ip', '-n', tb.ns('client'), ...a])
  for (const argv of [
    ['link', 'set', 'c0', 'down'],
    ['addr', 'del', `${from}/24`, 'dev', 'c0'],
    ['addr', 'add', `${to}/24`, 'dev', 'c0'],
    ['link', 'set', 'c0', 'up'],
    ['route', 'replace', 'default', 'via', tb.env.bastionIp],
  ]) {
    const r = await ip(...argv)
    if (r.code !== 0) throw new Error(`ip ${argv.join(' ')}: ${describeRun(r)}`)
  }
  return Date.now()
}

/**
 * The client's own link flaps (carrier lost and back, same address): down, `downMs`, up, default
 * route back. Resolves with the epoch ms at which the route was back.
 */
export async function flapClientLink(tb: Testbed, downMs: number): Promise<number> {
  const ip = (...a: string[]) => run(['ip', '-n', tb.ns('client'), ...a])
  let r = await ip('link', 'set', 'c0', 'down')
  if (r.code !== 0) throw new Error(`link down: ${describeRun(r)}`)
  await new Promise((res) => setTimeout(res, downMs))
  r = await ip('link', 'set', 'c0', 'up')
  if (r.code !== 0) throw new Error(`link up: ${describeRun(r)}`)
  r = await ip('route', 'replace', 'default', 'via', tb.env.bastionIp)
  if (r.code !== 0) throw new Error(`default route: ${describeRun(r)}`)
  return Date.now()
}

const DROP_TABLE = 'stfaultdrop'

/** Makes `ip`:`port` in the private namespace silently drop every TCP SYN (a target that never answers). */
export async function dropSyns(tb: Testbed, ip: string, port: number): Promise<void> {
  const script = `table inet ${DROP_TABLE} {\n chain in {\n  type filter hook input priority 0; policy accept;\n  ip daddr ${ip} tcp dport ${port} drop\n }\n}\n`
  const r = await run(tb.nsArgv('private', ['nft', '-f', '-']), { input: script })
  if (r.code !== 0) throw new Error(`nft drop rule: ${describeRun(r)}`)
}

/** Removes what dropSyns() added (no-op when absent). */
export async function undropSyns(tb: Testbed): Promise<void> {
  await run(tb.nsArgv('private', ['nft', 'delete', 'table', 'inet', DROP_TABLE]))
}

/**
 * The client namespace's whole firewall (iptables-save, ip6tables-save, nft list ruleset), with
 * what changes by itself removed: iptables-save's date comments and packet counters.
 */
export async function firewallSnapshot(tb: Testbed): Promise<string> {
  const d = await dumpFirewall(tb)
  const norm = (s: string): string =>
    s
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/g, '[:]').replace(/counter packets \d+ bytes \d+/g, 'counter'))
      .join('\n')
  return [norm(d.iptables), norm(d.ip6tables), norm(d.nft)].join('\n----\n')
}

/** Takes firewall snapshots every intervalMs until stopped; returns every distinct one seen. */
export function sampleFirewall(tb: Testbed, intervalMs = 250): { stop(): Promise<{ samples: number; distinct: string[] }> } {
  const seen = new Set<string>()
  let samples = 0
  let running = true
  const loop = (async () => {
    while (running) {
      seen.add(await firewallSnapshot(tb))
      samples++
      await new Promise((r) => setTimeout(r, intervalMs))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return { samples, distinct: [...seen] }
    },
  }
}

/** A CLI log line with its timestamp (the logger stamps lines when stderr is not a TTY). */
export interface LogLine {
  at: number
  text: string
}

/** Lines of the CLI's stderr that match re, with their ISO timestamps parsed. */
export function logLines(stderr: string, re: RegExp): LogLine[] {
  const out: LogLine[] = []
  for (const text of stderr.split('\n')) {
    if (!re.test(text)) continue
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) /.exec(text)
    out.push({ at: m ? Date.parse(m[1]!) : NaN, text })
  }
  return out
}

/** Polls a tunnel's stderr until a line matches re (returns it) or withinMs passes (undefined). */
export async function waitForLog(stderr: () => string, re: RegExp, withinMs: number): Promise<LogLine | undefined> {
  const deadline = Date.now() + withinMs
  for (;;) {
    const hit = logLines(stderr(), re)[0]
    if (hit || Date.now() >= deadline) return hit
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface Settled {
  echoed: number
  reset: number
  eof: number
  refused: number
  timeout: number
  other: number
  errors: string[]
  t: number
}

export interface Closed {
  i: number
  how: 'reset' | 'eof' | 'other'
  code: string
  t: number
}

/**
 * lib/hold-client.js in the client namespace: n connections to an echo server, each checked
 * with one line, the echoed ones held open and watched (see that script for the events).
 */
export class HoldClient {
  readonly settled: Promise<Settled>
  readonly closed: Closed[] = []
  readonly done: Promise<void>
  private err = ''

  private constructor(private readonly child: ChildProcess) {
    let onSettled!: (s: Settled) => void
    let onFail!: (e: Error) => void
    this.settled = new Promise((res, rej) => {
      onSettled = res
      onFail = rej
    })
    this.settled.catch(() => {})
    readJsonLines(
      child,
      (ev) => {
        if (ev.ev === 'settled') onSettled(ev as unknown as Settled)
        else if (ev.ev === 'closed') this.closed.push(ev as unknown as Closed)
      },
      (text) => (this.err += text),
    )
    this.done = new Promise((res) => {
      child.on('close', (code) => {
        onFail(new Error(`hold-client exited (${code}) before settling: ${this.err}`))
        res()
      })
    })
  }

  static start(tb: Testbed, host: string, port: number, n: number, opts: { settleMs?: number; holdMs?: number } = {}): HoldClient {
    const script = path.join(__dirname, 'hold-client.js')
    const argv = tb.nsArgv('client', [process.execPath, script, host, String(port), String(n), String(opts.settleMs ?? 20_000), String(opts.holdMs ?? 300_000)])
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    return new HoldClient(child)
  }

  /** Waits until `count` held connections were ended by the other side, or withinMs passes. */
  async waitClosed(count: number, withinMs: number): Promise<Closed[]> {
    const deadline = Date.now() + withinMs
    while (this.closed.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    return this.closed
  }

  /** Closes every connection still open and waits for the script to exit. */
  async stop(): Promise<void> {
    this.child.stdin!.end()
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await this.done
    clearTimeout(t)
  }
}

/** A curl download in the client namespace that says when its first bytes arrived and how it ended. */
export function streamingDownload(tb: Testbed, url: string): { firstBytes: Promise<void>; ended: Promise<{ code: number | null; bytes: number; stderr: string }> } {
  const argv = tb.nsArgv('client', ['curl', '-sS', '--connect-timeout', '5', '--max-time', '60', '--limit-rate', '20M', '-o', '-', url])
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  let bytes = 0
  let stderr = ''
  let first!: () => void
  const firstBytes = new Promise<void>((r) => (first = r))
  child.stdout!.on('data', (b: Buffer) => {
    bytes += b.length
    first()
  })
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
  const ended = new Promise<{ code: number | null; bytes: number; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      first()
      resolve({ code, bytes, stderr })
    })
  })
  return { firstBytes, ended }
}
