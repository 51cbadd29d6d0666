/**
 * External TUN engines: a tun2socks-style program reads the TUN device (created and routed by
 * the helper, owned by our uid) and sends every connection to our own SOCKS5 front-end on a
 * random loopback port with random credentials, so no other local user can use it. We find
 * the program, write its arguments or config, supervise it (restart on crash with backoff,
 * stop it with us) and report its version.
 *
 * What each one needs (read from their sources):
 *  - xjasonlyu tun2socks: `-device tun://NAME -proxy socks5://USER:PASS@HOST:PORT -loglevel L`.
 *    On Linux it attaches to an existing device with TUNSETIFF and only sets the MTU when
 *    given `-mtu`, which we never pass: it runs without any privilege. `-version` prints it.
 *  - hev-socks5-tunnel: `hev-socks5-tunnel CONFIG.yml` (tunnel name, socks5 address/port/
 *    credentials). It always sets the MTU and brings the link up itself (SIOCSIFMTU,
 *    SIOCSIFFLAGS): it needs CAP_NET_ADMIN (run as root, or `setcap cap_net_admin+ep` on it).
 *    No version flag: run without arguments, it prints "Version: X.Y.Z".
 *  - sing-box: `sing-box run -c CONFIG.json` with a tun inbound on our interface name and a
 *    socks outbound. It configures the interface through netlink itself (addresses, MTU, up):
 *    CAP_NET_ADMIN too; `auto_route` stays off, our routes are in place. `sing-box version`.
 * An engine that lacks the privilege it needs exits at once; the supervisor then stops
 * retrying after a few fast failures and says why (see START_FAILURES).
 *
 * "Stop with us": on a normal stop we SIGTERM (then SIGKILL) the engine. If we are SIGKILLed,
 * the engine is started under `setpriv --pdeathsig SIGTERM` when setpriv exists, and anyway
 * the helper deletes the device when we die, which ends the engine's reads.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { TunnelError, errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { formatHostPort } from '../config/host-port'

/** The command-line dialects we know. A PATH to any other program speaks tun2socks's. */
export type EngineKind = 'tun2socks' | 'hev-socks5-tunnel' | 'sing-box'
export const ENGINE_KINDS: readonly EngineKind[] = ['tun2socks', 'hev-socks5-tunnel', 'sing-box']

/** A located engine program. */
export interface EngineProgram {
  readonly kind: EngineKind
  /** Absolute path of the executable. */
  readonly path: string
}

/** Our SOCKS5 front-end as the engine must reach it. */
export interface SocksEndpoint {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly password: string
}

/** How to start an engine: argv after the program, and a config file to write first. */
export interface EngineLaunch {
  readonly args: string[]
  readonly config?: { readonly file: string; readonly text: string }
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

/** The dialect of a program, from its file name (tun2socks-linux-amd64 is still tun2socks). */
export function kindOf(file: string): EngineKind {
  const base = path.basename(file)
  if (base.startsWith('hev-socks5-tunnel')) return 'hev-socks5-tunnel'
  if (base.startsWith('sing-box')) return 'sing-box'
  return 'tun2socks'
}

/**
 * `--tun-engine NAME|PATH` → the program: a known NAME is searched on PATH, anything with a
 * slash is a path. Throws USAGE when it cannot be found or run.
 */
export function findEngine(spec: string, envPath: string = process.env.PATH ?? ''): EngineProgram {
  if (spec.includes('/')) {
    const abs = path.resolve(spec)
    if (!isExecutable(abs)) throw new TunnelError('USAGE', `--tun-engine ${spec}: not an executable file`)
    return { kind: kindOf(abs), path: abs }
  }
  if (!(ENGINE_KINDS as readonly string[]).includes(spec)) {
    throw new TunnelError('USAGE', `--tun-engine ${spec}: unknown engine`, {
      hint: `use builtin, ${ENGINE_KINDS.join(', ')}, or the path of a program that speaks tun2socks's options`,
    })
  }
  for (const dir of envPath.split(':').filter(Boolean)) {
    const p = path.join(dir, spec)
    if (isExecutable(p)) return { kind: spec as EngineKind, path: p }
  }
  throw new TunnelError('USAGE', `--tun-engine ${spec}: not found on PATH`, {
    hint: `install ${spec}, give its path (--tun-engine /path/to/${spec}), or use --tun-engine builtin`,
  })
}

/** YAML/JSON-safe: our values are loopback literals, ports and hex credentials, checked here. */
function assertPlain(s: string, what: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(s)) throw new TunnelError('INTERNAL', `engine ${what} "${s}" is not plain`)
  return s
}

/**
 * Pure: argv (and config file) for one engine. `configDir` is a private directory of ours
 * (the config holds the proxy credentials). `verbose`: the engine logs at info instead of warn.
 */
export function engineLaunch(
  kind: EngineKind,
  o: { device: string; socks: SocksEndpoint; mtu: number; configDir: string; verbose?: boolean },
): EngineLaunch {
  const dev = assertPlain(o.device, 'device')
  const host = assertPlain(o.socks.host, 'socks host')
  const user = assertPlain(o.socks.username, 'socks user')
  const pass = assertPlain(o.socks.password, 'socks password')
  const hostPort = formatHostPort(host, o.socks.port)
  switch (kind) {
    case 'tun2socks':
      return { args: ['-device', `tun://${dev}`, '-proxy', `socks5://${user}:${pass}@${hostPort}`, '-loglevel', o.verbose ? 'info' : 'warn'] }
    case 'hev-socks5-tunnel': {
      const file = path.join(o.configDir, 'hev-socks5-tunnel.yml')
      // No ipv4/ipv6 keys: the helper gave the device its addresses already.
      const text = [
        'tunnel:', `  name: ${dev}`, `  mtu: ${o.mtu}`, '  multi-queue: false',
        'socks5:', `  port: ${o.socks.port}`, `  address: '${host}'`, "  udp: 'tcp'", `  username: '${user}'`, `  password: '${pass}'`,
        'misc:', '  log-file: stderr', `  log-level: ${o.verbose ? 'info' : 'warn'}`, '',
      ].join('\n')
      return { args: [file], config: { file, text } }
    }
    case 'sing-box': {
      const file = path.join(o.configDir, 'sing-box.json')
      const config = {
        log: { level: o.verbose ? 'info' : 'warn' },
        inbounds: [{ type: 'tun', tag: 'tun-in', interface_name: dev, address: ['169.254.77.1/30', 'fd7a:5354::1/126'], mtu: o.mtu, auto_route: false, stack: 'gvisor' }],
        outbounds: [{ type: 'socks', tag: 'socks-out', server: host, server_port: o.socks.port, version: '5', username: user, password: pass }],
      }
      return { args: ['run', '-c', file], config: { file, text: JSON.stringify(config, null, 2) + '\n' } }
    }
  }
}

/** argv (after the program) that prints an engine's version. */
export function versionArgs(kind: EngineKind): string[] {
  return kind === 'tun2socks' ? ['-version'] : kind === 'sing-box' ? ['version'] : []
}

/** The version in a `-version` / `version` / help output, e.g. "2.5.2". */
export function parseVersion(out: string): string | undefined {
  return /(?:version[: ]+|-|\bv)(\d+\.\d+(?:\.\d+)?(?:[-+][\w.]+)?)/i.exec(out)?.[1] ?? /\b(\d+\.\d+\.\d+)\b/.exec(out)?.[1]
}

/** Runs the program's version command (2 s at most); undefined when it says nothing usable. */
export function probeVersion(p: EngineProgram): Promise<string | undefined> {
  return new Promise((resolve) => {
    let out = ''
    const child = spawn(p.path, versionArgs(p.kind), { stdio: ['ignore', 'pipe', 'pipe'] })
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    child.on('error', () => resolve(undefined))
    child.on('close', () => {
      clearTimeout(timer)
      resolve(parseVersion(out.slice(0, 4096)))
    })
  })
}

/** After this many exits within FAST_EXIT_MS of their start in a row, the engine is given up. */
export const START_FAILURES = 3
const FAST_EXIT_MS = 2000

export interface ExternalEngineOptions {
  readonly program: EngineProgram
  readonly device: string
  readonly mtu: number
  readonly socks: SocksEndpoint
  readonly log: Logger
  /** Called once when the engine is given up (keeps failing at start). */
  readonly onFatal?: (err: TunnelError) => void
  /** Restart delays: first, and cap (default 500 ms doubling to 30 s). */
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number }
  /** Prefix argv (default: setpriv --pdeathsig SIGTERM -- when setpriv is on PATH). */
  readonly wrap?: readonly string[]
}

export interface ExternalEngine {
  readonly program: EngineProgram
  readonly version: string | undefined
  /** Times the engine was restarted after exiting on its own. */
  restarts(): number
  /** pid of the running engine, if one runs now. */
  pid(): number | undefined
  stop(): Promise<void>
}

function defaultWrap(): string[] {
  try {
    return [findOnPath('setpriv'), '--pdeathsig', 'SIGTERM', '--']
  } catch {
    return []
  }
}

function findOnPath(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/bin'])) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name)
  }
  throw new Error(`${name} not found`)
}

/**
 * Starts and supervises an engine. Resolves once it has been spawned (and its version read);
 * an engine that keeps dying within 2 s of its start is given up after START_FAILURES tries
 * and reported through onFatal with its last stderr line.
 */
export async function startExternalEngine(o: ExternalEngineOptions): Promise<ExternalEngine> {
  const version = await probeVersion(o.program)
  // Only engines with a config file get a (private) directory: tun2socks takes arguments, and
  // a SIGKILLed run then leaves nothing in /tmp.
  const configDir = o.program.kind === 'tun2socks' ? '' : fs.mkdtempSync(path.join(os.tmpdir(), 'subnet-tunnel-engine-'))
  const launch = engineLaunch(o.program.kind, { device: o.device, socks: o.socks, mtu: o.mtu, configDir, verbose: o.log.enabled('verbose') })
  if (launch.config) fs.writeFileSync(launch.config.file, launch.config.text, { mode: 0o600 })
  const wrap = o.wrap ?? defaultWrap()
  const backoff = o.backoff ?? { firstMs: 500, maxMs: 30_000 }
  const name = path.basename(o.program.path)
  let child: ChildProcess | undefined
  let stopping = false
  let restarts = 0
  let fastFailures = 0
  let delay = backoff.firstMs
  let timer: NodeJS.Timeout | undefined
  let lastErr = ''

  const run = (): void => {
    const argv = [...wrap, o.program.path, ...launch.args]
    const startedAt = Date.now()
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    const relay = (d: Buffer): void => {
      for (const line of d.toString().split('\n').filter((l) => l.trim())) {
        lastErr = line.trim().slice(0, 300)
        o.log.verbose('route', `${name}: ${lastErr}`)
      }
    }
    c.stdout!.on('data', relay)
    c.stderr!.on('data', relay)
    c.on('error', (e) => (lastErr = errorMessage(e)))
    c.on('close', (code, signal) => {
      if (child === c) child = undefined
      if (stopping) return
      const fast = Date.now() - startedAt < FAST_EXIT_MS
      fastFailures = fast ? fastFailures + 1 : 0
      if (!fast) delay = backoff.firstMs
      const how = signal ? `signal ${signal}` : `code ${code}`
      if (fastFailures >= START_FAILURES) {
        o.log.error('route', `${name} keeps exiting at start (${how}): ${lastErr || 'no output'}`)
        o.onFatal?.(new TunnelError('FW_UNSUPPORTED', `tun engine ${name} exited at start ${fastFailures} times (${how}): ${lastErr || 'no output'}`, {
          hint: o.program.kind === 'tun2socks'
            ? 'run it by hand with the same arguments (-v shows them) to see why'
            : `${name} configures the device itself and needs CAP_NET_ADMIN: run as root, or use --tun-engine builtin or tun2socks`,
        }))
        return
      }
      o.log.warn('route', `${name} exited (${how}); restarting in ${delay} ms`)
      timer = setTimeout(() => {
        timer = undefined
        restarts++
        run()
      }, delay)
      delay = Math.min(delay * 2, backoff.maxMs)
    })
    o.log.verbose('route', `started ${argv.join(' ').replace(/socks5:\/\/[^@]*@/, 'socks5://…@')}`)
  }
  run()

  return {
    program: o.program,
    version,
    restarts: () => restarts,
    pid: () => child?.pid,
    async stop() {
      stopping = true
      if (timer) clearTimeout(timer)
      const c = child
      if (c && c.exitCode === null && c.signalCode === null) {
        const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
        c.kill('SIGTERM')
        const kill = setTimeout(() => c.kill('SIGKILL'), 3000)
        await closed
        clearTimeout(kill)
      }
      if (configDir) fs.rmSync(configDir, { recursive: true, force: true })
    },
  }
}
