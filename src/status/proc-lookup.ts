/**
 * Which local process opened a connection: the audit log's "who". Linux only (/proc); elsewhere
 * every lookup simply finds nothing.
 *
 * Two steps, like `ss -p` / `lsof -i`:
 *  1. /proc/net/tcp{,6}: the client's own socket is the line whose LOCAL address:port is the
 *     source address:port our listener saw (for kernel-redirected connections too: the redirect
 *     rewrites the destination only). The line gives the socket inode and the owner's uid.
 *  2. /proc/<pid>/fd/*: the process holding a symlink `socket:[inode]`.
 * Step 1 is one file read, shared by every lookup asked for meanwhile (readTable).
 * Step 2 reads every fd of candidate processes, so it is bounded (pid cap, uid filter, recently
 * matched processes first) and skipped when we could not read the other user's fds anyway.
 */
import { promises as fs } from 'node:fs'
import os from 'node:os'
import ipaddr from 'ipaddr.js'
import type { ConnObserver, TrackedConn } from '../router/conn-tracker'
import { redactArgv } from '../observe/redact'
import type { ProcessInfo } from './status-types'

export type { ProcessInfo } from './status-types'

export interface LookupOptions {
  /** Where procfs is mounted (tests). Default /proc. */
  readonly procRoot?: string
  /** Where the socket tables are: `<procRoot>/net` (our own network namespace) by default;
   * `/proc/<pid>/net` reads the tables of that process's namespace. */
  readonly netDir?: string
  /** Give up after scanning this many processes. Default 4096. */
  readonly maxPids?: number
  /** A socket table read started at or after this time (ms) may be shared; default: now. */
  readonly notBefore?: number
}

const LISTEN = '0A'
const MAX_COMMAND = 256
const PID_BATCH = 16
/** pids that recently owned a client socket: browsers and build tools open many connections. */
const recentPids: number[] = []

/**
 * Finds the local process owning the TCP socket whose local end is srcAddress:srcPort.
 * `dstPort`, when known, is the remote port of that socket (the original destination port for
 * redirected connections) and disambiguates the rare case of one local port shared by several
 * connections. Resolves null when no such socket exists here; never rejects.
 */
export async function lookupLocalProcess(
  srcAddress: string,
  srcPort: number,
  dstPort?: number,
  opts: LookupOptions = {},
): Promise<ProcessInfo | null> {
  try {
    const root = opts.procRoot ?? '/proc'
    const sock = await findSocket(opts.netDir ?? `${root}/net`, srcAddress, srcPort, dstPort, opts.notBefore ?? Date.now())
    if (!sock) return null
    const me = process.getuid?.() ?? -1
    // Another user's fds are unreadable unless we are root: say whose it is and stop there.
    if (me !== 0 && me !== sock.uid) return { pid: null, command: null, uid: sock.uid }
    const pid = await findPid(root, sock.inode, sock.uid, opts.maxPids ?? 4096)
    if (pid === null) return { pid: null, command: null, uid: sock.uid }
    return await describePid(root, pid, sock.uid)
  } catch {
    return null
  }
}

/** The /proc/net/tcp spelling of an address: 32-bit words in host byte order, as %08X each. */
export function procHexAddress(bytes: number[]): string {
  const le = os.endianness() === 'LE'
  let out = ''
  for (let w = 0; w < bytes.length; w += 4) {
    const word = bytes.slice(w, w + 4)
    if (le) word.reverse()
    out += Buffer.from(word).toString('hex')
  }
  return out.toUpperCase()
}

/** The `ADDR:PORT` keys a socket with this local address can have, per file. */
export function procKeys(address: string, port: number): { tcp?: string; tcp6?: string } {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0')
  let addr = ipaddr.parse(address.replace(/%.*$/, ''))
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    addr = (addr as ipaddr.IPv6).toIPv4Address()
  }
  if (addr.kind() === 'ipv6') return { tcp6: `${procHexAddress(addr.toByteArray())}:${portHex}` }
  const v4 = addr.toByteArray()
  // An IPv4 client may still own an AF_INET6 socket (dual-stack, v4-mapped): check both files.
  const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4]
  return { tcp: `${procHexAddress(v4)}:${portHex}`, tcp6: `${procHexAddress(mapped)}:${portHex}` }
}

interface SockLine {
  readonly inode: string
  readonly uid: number
}

/** One socket table line: local key → the sockets there (inode, uid, remote port). */
interface TableEntry extends SockLine {
  readonly remPort: number
}

/**
 * Reads of /proc/net/tcp{,6}, shared. Reading the table walks every socket of the namespace
 * (TIME_WAIT ones included: tens of thousands under a connection storm), so each lookup reading
 * it on its own made a status with many connections, or an audit log under load, spend most of
 * the tunnel's CPU in the kernel's tcp_seq_start. A read started at or after a lookup was asked
 * for sees that socket if it still exists, so every lookup asked for while one read runs shares
 * the next one; the table is parsed once per read.
 */
interface TableRead {
  readonly startedAt: number
  readonly table: Promise<Map<string, TableEntry[]> | undefined>
}
const tableReads = new Map<string, TableRead>()

function readTable(file: string, notBefore: number): Promise<Map<string, TableEntry[]> | undefined> {
  const last = tableReads.get(file)
  if (last && last.startedAt >= notBefore) return last.table
  const startedAt = Date.now()
  const table = fs.readFile(file, 'latin1').then(parseTable, () => undefined) // no IPv6 here, or no procfs
  tableReads.set(file, { startedAt, table })
  // Forget it a second after it is done: later lookups need a fresh read anyway (memory).
  void table.then(() => setTimeout(() => tableReads.get(file)?.table === table && tableReads.delete(file), 1000).unref())
  return table
}

function parseTable(text: string): Map<string, TableEntry[]> {
  const out = new Map<string, TableEntry[]>()
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || f[3] === LISTEN) continue
    const inode = f[9]
    if (inode === '0') continue // TIME_WAIT and friends: no owner any more
    const entry = { inode, uid: Number(f[7]), remPort: parseInt(f[2].split(':')[1] ?? '', 16) }
    const list = out.get(f[1])
    if (list) list.push(entry)
    else out.set(f[1], [entry])
  }
  return out
}

async function findSocket(netDir: string, address: string, port: number, dstPort: number | undefined, notBefore: number): Promise<SockLine | null> {
  const keys = procKeys(address, port)
  let fallback: SockLine | null = null
  for (const file of ['tcp', 'tcp6'] as const) {
    const key = keys[file]
    if (!key) continue
    const entries = (await readTable(`${netDir}/${file}`, notBefore))?.get(key) ?? []
    for (const e of entries) {
      const found = { inode: e.inode, uid: e.uid }
      if (dstPort === undefined || e.remPort === dstPort) return found
      fallback ??= found
    }
  }
  return fallback
}

async function findPid(root: string, inode: string, uid: number, maxPids: number): Promise<number | null> {
  const target = `socket:[${inode}]`
  const all = (await fs.readdir(root)).filter((n) => /^\d+$/.test(n)).map(Number)
  // Recently matched processes first, then newest first (clients are usually young), ourselves
  // last: our own fd table is the biggest and we are rarely our own client.
  const seen = new Set<number>(recentPids)
  const rest = all.filter((p) => !seen.has(p) && p !== process.pid).sort((a, b) => b - a)
  const order = [...recentPids.filter((p) => all.includes(p)), ...rest]
  if (!seen.has(process.pid)) order.push(process.pid)
  order.splice(maxPids)
  for (let i = 0; i < order.length; i += PID_BATCH) {
    const batch = order.slice(i, i + PID_BATCH)
    const hits = await Promise.all(batch.map((pid) => holds(root, pid, uid, target)))
    const idx = hits.indexOf(true)
    if (idx >= 0) {
      remember(batch[idx])
      return batch[idx]
    }
  }
  return null
}

/** Whether pid has an fd pointing at target. Skips processes of other users without reading fds. */
async function holds(root: string, pid: number, uid: number, target: string): Promise<boolean> {
  try {
    // /proc/<pid> is owned by the process's effective uid; the socket's uid is its creator's.
    if ((await fs.stat(`${root}/${pid}`)).uid !== uid) return false
    const dir = `${root}/${pid}/fd`
    const fds = await fs.readdir(dir)
    for (const fd of fds) {
      const link = await fs.readlink(`${dir}/${fd}`).catch(() => '')
      if (link === target) return true
    }
  } catch {
    // exited meanwhile, or not ours to read
  }
  return false
}

function remember(pid: number): void {
  const i = recentPids.indexOf(pid)
  if (i >= 0) recentPids.splice(i, 1)
  recentPids.unshift(pid)
  if (recentPids.length > 16) recentPids.pop()
}

async function describePid(root: string, pid: number, sockUid: number): Promise<ProcessInfo> {
  let command: string | null = null
  try {
    const raw = await fs.readFile(`${root}/${pid}/cmdline`, 'utf8')
    // Credentials on the client's command line (curl -x http://user:pw@…) must not reach the
    // audit log or status: see redact.ts.
    command = redactArgv(raw.split('\0').filter((a, i, arr) => a !== '' || i < arr.length - 1)).join(' ').trim()
    if (command === '') {
      command = `[${(await fs.readFile(`${root}/${pid}/comm`, 'utf8')).trim()}]`
    }
  } catch {
    // exited between the fd scan and now
  }
  if (command !== null && command.length > MAX_COMMAND) command = command.slice(0, MAX_COMMAND - 1) + '…'
  let uid = sockUid
  try {
    const status = await fs.readFile(`${root}/${pid}/status`, 'utf8')
    const m = /^Uid:\s+(\d+)/m.exec(status)
    if (m) uid = Number(m[1])
  } catch {
    // keep the socket's uid
  }
  return { pid, command, uid }
}

// ---------------------------------------------------------------------------------------------

/** Loopback, or an address of one of this host's interfaces (redirected local clients). */
export function isLocalAddress(address: string): boolean {
  const a = address.replace(/%.*$/, '').replace(/^::ffff:(?=\d+\.)/i, '')
  if (a === '::1' || a.startsWith('127.')) return true
  return localAddresses().has(a.toLowerCase())
}

let ifCache: { at: number; set: Set<string> } | undefined
function localAddresses(): Set<string> {
  const now = Date.now()
  if (!ifCache || now - ifCache.at > 10_000) {
    const set = new Set<string>()
    for (const list of Object.values(os.networkInterfaces())) {
      for (const i of list ?? []) set.add(i.address.replace(/%.*$/, '').toLowerCase())
    }
    ifCache = { at: now, set }
  }
  return ifCache.set
}

export interface ConnProcessesOptions {
  /** The lookup (tests inject a fake). Default lookupLocalProcess. */
  readonly lookup?: (srcAddress: string, srcPort: number, dstPort?: number, opts?: LookupOptions) => Promise<ProcessInfo | null>
  /** Which client addresses are worth a lookup. Default isLocalAddress. */
  readonly isLocal?: (address: string) => boolean
  /** Lookups running at once (each may read many /proc files). Default 2. */
  readonly maxConcurrent?: number
  /** Lookups waiting beyond this are skipped (null): a burst must not queue without bound. Default 256. */
  readonly maxQueued?: number
}

/**
 * Looks up the local process of each connection as it opens — while the client's socket still
 * exists — and keeps the answer until it closes. Register it with `tracker.observe()` to have
 * `get(id)` for status output; the audit log calls `start()` itself (idempotent per id).
 */
export class ConnProcesses implements ConnObserver {
  private readonly pending = new Map<number, Promise<ProcessInfo | null>>()
  private readonly done = new Map<number, ProcessInfo | null>()
  private running = 0
  private readonly queue: Array<() => void> = []

  constructor(private readonly opts: ConnProcessesOptions = {}) {}

  opened(c: TrackedConn): void {
    void this.start(c)
  }

  closed(c: TrackedConn): void {
    this.forget(c.meta.id)
  }

  /** Starts (or joins) the lookup for c. Resolves null for non-local clients; never rejects. */
  start(c: TrackedConn): Promise<ProcessInfo | null> {
    const id = c.meta.id
    const existing = this.pending.get(id)
    if (existing) return existing
    const isLocal = this.opts.isLocal ?? isLocalAddress
    let p: Promise<ProcessInfo | null>
    if (c.meta.frontEnd === 'dns' || !isLocal(c.meta.srcAddress)) {
      p = Promise.resolve(null)
    } else {
      // A redirected client's socket is connected to the original destination port.
      const dstPort = c.meta.frontEnd === 'transparent' ? c.dst.port : undefined
      // Any socket table read that starts from now on sees the client's socket (queued lookups share it).
      const notBefore = Date.now()
      p = this.limited(() => (this.opts.lookup ?? lookupLocalProcess)(c.meta.srcAddress, c.meta.srcPort, dstPort, { notBefore }))
    }
    p = p.catch(() => null)
    this.pending.set(id, p)
    void p.then((r) => {
      if (this.pending.get(id) === p) this.done.set(id, r)
    })
    return p
  }

  /** The process of an open connection, once its lookup has finished and found one. */
  get(id: number): ProcessInfo | undefined {
    return this.done.get(id) ?? undefined
  }

  forget(id: number): void {
    this.pending.delete(id)
    this.done.delete(id)
  }

  private limited(fn: () => Promise<ProcessInfo | null>): Promise<ProcessInfo | null> {
    const max = this.opts.maxConcurrent ?? 2
    if (this.running >= max && this.queue.length >= (this.opts.maxQueued ?? 256)) return Promise.resolve(null)
    return new Promise((resolve) => {
      const run = (): void => {
        this.running++
        fn()
          .catch(() => null)
          .then((r) => {
            this.running--
            this.queue.shift()?.()
            resolve(r)
          })
      }
      if (this.running < max) run()
      else this.queue.push(run)
    })
  }
}
