/**
 * "How do we reach the bastion now?" — the route lookup the kernel would do for a new
 * connection, plus the state of the interfaces, as the user (no privilege needed):
 *   Linux: `ip -o route get ADDR` (policy rules included, so the tun backend's throw routes are
 *          honoured) and `ip -o link show`;
 *   macOS: `route -n get ADDR`, `ifconfig DEV`, the interface index through if_nametoindex
 *          (RTM_IFINFO names interfaces by index only) and the source address from the
 *          interface's addresses (route get does not print one).
 * Commands are argv lists with a deadline; their environment is PATH and LC_ALL=C.
 */
import { spawn } from 'node:child_process'
import * as os from 'node:os'
import { TunnelError } from '../../errors'
import { IP_LINK_LIST_ARGV, ipRouteGetArgv, isNoRouteError, parseIpLinkList, parseIpRouteGet } from './ip-monitor'
import type { BastionPath, LinkState } from './net-events'
import { ipFamily, stripZone } from './net-events'
import { ifconfigArgv, isNoRouteErrorDarwin, parseIfconfigState, parseRouteGetDarwin, routeGetArgvDarwin } from './route-monitor-darwin'

export interface PathSnapshot {
  /** Undefined: no route to the bastion right now. */
  readonly path: BastionPath | undefined
  /** Interface states known at the time of the lookup (Linux: all; macOS: the path's). */
  readonly links: readonly LinkState[]
}

export type PathQuery = (bastion: string) => Promise<PathSnapshot>

export interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}
export type Run = (argv: readonly string[]) => Promise<RunResult>

/** Runs argv (no shell) with a deadline; spawn failures become TunnelError FW_UNSUPPORTED. */
export function runCommand(argv: readonly string[], timeoutMs = 3000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' }
    const c = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs)
    c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    c.on('error', (e) => {
      clearTimeout(timer)
      reject(new TunnelError('FW_UNSUPPORTED', `${argv[0]}: ${e.message}`, { cause: e }))
    })
    c.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout: stdout.slice(0, 1 << 20), stderr: stderr.slice(0, 4096) })
    })
  })
}

function lookupFailed(argv: readonly string[], r: RunResult): TunnelError {
  return new TunnelError('FW_UNSUPPORTED', `${argv.join(' ')}: ${r.stderr.trim() || `exit code ${r.code}`}`)
}

export function linuxPathQuery(run: Run = runCommand): PathQuery {
  return async (bastion) => {
    const getArgv = ipRouteGetArgv(bastion)
    const [get, list] = await Promise.all([run(getArgv), run(IP_LINK_LIST_ARGV)])
    const links = list.code === 0 ? parseIpLinkList(list.stdout) : []
    if (get.code !== 0) {
      if (isNoRouteError(get.stderr)) return { path: undefined, links }
      throw lookupFailed(getArgv, get)
    }
    const r = parseIpRouteGet(get.stdout)
    if (!r) return { path: undefined, links }
    // Names from a fresh `ip` process are current, so name → index is safe here.
    const link = links.find((l) => l.name === r.dev)
    const path: BastionPath = { ...r, index: link?.index, up: link ? link.up && link.running : true }
    return { path, links }
  }
}

/** Kernel index of an interface (0 = none → undefined), through libc's if_nametoindex. */
export type IfIndex = (name: string) => number | undefined

let ifNameToIndexFn: ((name: string) => number) | undefined
export function ifNameToIndex(name: string, platform: NodeJS.Platform = process.platform): number | undefined {
  if (!ifNameToIndexFn) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const koffi = require('koffi') as typeof import('koffi')
    const lib = koffi.load(platform === 'darwin' ? '/usr/lib/libSystem.B.dylib' : 'libc.so.6')
    ifNameToIndexFn = lib.func('unsigned int if_nametoindex(const char *ifname)') as (name: string) => number
  }
  const i = ifNameToIndexFn(name)
  return i > 0 ? i : undefined
}

export function darwinPathQuery(
  run: Run = runCommand,
  ifIndex: IfIndex = (n) => ifNameToIndex(n),
  interfaces: () => NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces,
): PathQuery {
  return async (bastion) => {
    const getArgv = routeGetArgvDarwin(bastion)
    const get = await run(getArgv)
    if (get.code !== 0) {
      if (isNoRouteErrorDarwin(get.stderr)) return { path: undefined, links: [] }
      throw lookupFailed(getArgv, get)
    }
    const r = parseRouteGetDarwin(get.stdout)
    if (!r) return { path: undefined, links: [] }
    const ifc = await run(ifconfigArgv(r.dev))
    const state = ifc.code === 0 ? parseIfconfigState(ifc.stdout) : undefined
    const index = ifIndex(r.dev)
    const family = ipFamily(bastion) === 6 ? 'IPv6' : 'IPv4'
    const addr = (interfaces()[r.dev] ?? []).find((a) => a.family === family && !a.internal && !stripZone(a.address).startsWith('fe80:'))
    const up = state ? state.up && state.running : true
    const path: BastionPath = { dev: r.dev, via: r.via, src: addr?.address, index, up }
    const links: LinkState[] = index !== undefined && state ? [{ index, name: r.dev, ...state }] : []
    return { path, links }
  }
}

export function defaultPathQuery(platform: NodeJS.Platform = process.platform): PathQuery | undefined {
  if (platform === 'linux') return linuxPathQuery()
  if (platform === 'darwin') return darwinPathQuery()
  return undefined
}
