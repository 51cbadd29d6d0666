import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import type { Destination } from '../router/types'

/** What subnet-tunnel needs from a resolv.conf (resolv.conf(5)). */
export interface ResolvConf {
  /** Nameserver IP literals in file order, %scope dropped, duplicates removed. */
  readonly nameservers: string[]
  /** The same, as written (link-local IPv6 keeps its %scope: needed to send to it). */
  readonly scopedNameservers: string[]
  /** Search domains (the last search/domain line wins, as in glibc). */
  readonly search: string[]
}

/** systemd-resolved's stub listeners: 127.0.0.53 (stub) and 127.0.0.54 (proxy-only stub). */
export function isResolvedStub(addr: string): boolean {
  return addr === '127.0.0.53' || addr === '127.0.0.54'
}

/**
 * Parses resolv.conf text. Lenient like glibc: unknown lines and bad addresses are skipped,
 * comments start with # or ;, anything after the address on a nameserver line is ignored.
 */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = []
  const scopedNameservers: string[] = []
  let search: string[] = []
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/[#;].*$/, '').trim()
    if (line === '') continue
    const [key, ...args] = line.split(/\s+/)
    if (key === 'nameserver' && args.length > 0) {
      const scoped = args[0]
      const addr = scoped.replace(/%.*$/, '')
      if (net.isIP(addr) === 0 || nameservers.includes(addr)) continue
      nameservers.push(addr)
      scopedNameservers.push(scoped)
    } else if (key === 'search' || key === 'domain') {
      search = args.map((d) => d.replace(/\.$/, '')).filter((d) => d !== '')
    }
  }
  return { nameservers, scopedNameservers, search }
}

/**
 * The remote resolvers to ask, from the bastion's /etc/resolv.conf (read over an exec channel
 * by the CLI). 127.0.0.53 is kept: it is the bastion's own systemd-resolved stub, reached
 * through the channel like any other address. Link-local addresses are dropped (their scope
 * is the bastion's interface, which direct-tcpip cannot express).
 */
export function remoteResolvers(text: string): Destination[] {
  return parseResolvConf(text)
    .nameservers.filter((a) => !/^fe[89ab][0-9a-f]:/i.test(a))
    .map((host) => ({ host, port: 53 }))
}

/**
 * Upstream addresses in `resolvectl dns` output, e.g.
 *   Global: 1.1.1.1#cloudflare-dns.com
 *   Link 2 (eth0): 192.168.1.1 fe80::1%2 [2001:db8::1]:53
 * The DoT server name (#…), brackets, :port and %scope are dropped.
 */
export function parseResolvectlDns(output: string): string[] {
  const out: string[] = []
  for (const line of output.split(/\r?\n/)) {
    const colon = line.match(/^\s*(?:Global|Link \d+ \([^)]*\)):\s*(.*)$/)
    if (!colon) continue
    for (const tok of colon[1].split(/\s+/)) {
      const addr = stripServerToken(tok)
      if (addr && net.isIP(addr) !== 0 && !out.includes(addr)) out.push(addr)
    }
  }
  return out
}

function stripServerToken(tok: string): string | undefined {
  let t = tok.replace(/#.*$/, '')
  if (t === '') return undefined
  const bracket = t.match(/^\[([^\]]+)\](?::\d+)?$/)
  if (bracket) t = bracket[1]
  else if (net.isIP(t.replace(/%.*$/, '')) === 0) t = t.replace(/:\d+$/, '') // 1.2.3.4:53
  return t.replace(/%.*$/, '')
}

/** Runs a command; resolves with stdout, or undefined when it is missing or fails. */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<string | undefined>

/** execFile with a 5 s timeout; never rejects. */
export const runCommand: CommandRunner = (file, args) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: 5000 }, (err, stdout) => resolve(err ? undefined : String(stdout)))
  })

export interface SystemReaders {
  readonly readText?: (path: string) => Promise<string | undefined>
  readonly run?: CommandRunner
}

const readText = (path: string): Promise<string | undefined> => readFile(path, 'utf8').catch(() => undefined)

/**
 * The real upstream servers of systemd-resolved (when /etc/resolv.conf points at its stub):
 * /run/systemd/resolve/resolv.conf lists them; `resolvectl dns` is the fallback. Stub
 * addresses are never returned. Empty when neither is available.
 */
export async function systemdResolvedUpstreams(r: SystemReaders = {}): Promise<string[]> {
  const text = await (r.readText ?? readText)('/run/systemd/resolve/resolv.conf')
  const fromFile = text ? parseResolvConf(text).nameservers.filter((a) => !isResolvedStub(a)) : []
  if (fromFile.length > 0) return fromFile
  const out = await (r.run ?? runCommand)('resolvectl', ['dns'])
  return out ? parseResolvectlDns(out).filter((a) => !isResolvedStub(a)) : []
}

/** This machine's nameservers, and the resolved upstreams when it uses the stub. */
export interface LocalDns {
  readonly resolvConf: ResolvConf
  /** True when resolv.conf lists a systemd-resolved stub address. */
  readonly usesResolved: boolean
  /** The stub's upstreams (empty when not using resolved or when unknown). */
  readonly resolvedUpstreams: string[]
}

export async function readLocalDns(path = '/etc/resolv.conf', r: SystemReaders = {}): Promise<LocalDns> {
  const resolvConf = parseResolvConf((await (r.readText ?? readText)(path)) ?? '')
  const usesResolved = resolvConf.nameservers.some(isResolvedStub)
  const resolvedUpstreams = usesResolved ? await systemdResolvedUpstreams(r) : []
  return { resolvConf, usesResolved, resolvedUpstreams }
}

/**
 * Empties systemd-resolved's cache (on start, so names cached before the tunnel are asked
 * again; on stop, so tunnel answers do not outlive it). Best effort: false when resolvectl is
 * missing or fails.
 */
export async function flushResolvedCache(run: CommandRunner = runCommand): Promise<boolean> {
  return (await run('resolvectl', ['flush-caches'])) !== undefined
}

/**
 * Parses a resolver given on the command line (--to-ns): "10.0.0.2", "10.0.0.2:5353",
 * "fd00::53", "[fd00::53]:5353". Undefined when it is not an IP literal with a valid port.
 */
export function parseServerSpec(spec: string): Destination | undefined {
  const s = spec.trim()
  let host = s
  let port = 53
  const bracket = s.match(/^\[([^\]]+)\](?::(\d+))?$/)
  const v4port = s.match(/^([\d.]+):(\d+)$/)
  if (bracket) {
    host = bracket[1]
    if (bracket[2] !== undefined) port = Number(bracket[2])
  } else if (v4port) {
    host = v4port[1]
    port = Number(v4port[2])
  }
  if (net.isIP(host) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { host, port }
}
