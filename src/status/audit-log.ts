/**
 * `--audit-log FILE`: one JSON line per finished connection (and optionally per DNS query) —
 * who (local process) reached what (destination), when, through which bastion, how much.
 *
 * The file is append-only, mode 0600 (it names processes and destinations), and each line is one
 * write() on an O_APPEND descriptor, so lines never interleave even with several instances
 * writing the same file. Nothing here throws into the data path: a full disk costs audit lines
 * (logged once), never connections.
 */
import { constants, promises as fs } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { TunnelError, errorMessage } from '../errors'
import type { ConnEnd, ConnObserver, TrackedConn } from '../router/conn-tracker'
import type { Destination } from '../router/types'
import type { Logger } from '../observe/logger'
import { ConnProcesses } from './proc-lookup'
import { SAFE_OPEN_FLAGS, effectiveUid, openFailureReason, unsafeFileReason } from '../observe/safe-file'
import { shellQuote } from '../observe/shell-quote'
import { formatHostPort } from '../config/host-port'
import type { ProcessInfo } from './status-types'

/** Lines waiting for the disk beyond this are dropped (and counted) rather than piling up. */
const MAX_PENDING = 10_000

export interface AuditLogOptions {
  readonly log: Logger
  /** Names the bastion a destination was sent through (several remotes); null when unknown. */
  readonly remoteFor?: (dst: Destination) => string | undefined
  /** Shared process lookups (the one status uses); default: a private one. */
  readonly processes?: ConnProcesses
}

/** A connection line, as written. */
export interface AuditConnLine {
  readonly type: 'conn'
  /** End of the connection, ISO 8601. */
  readonly time: string
  /** Start, ISO 8601. */
  readonly start: string
  readonly id: number
  readonly frontEnd: string
  readonly process: ProcessInfo | null
  readonly src: string
  /** `host:port`: an address for captured traffic, the requested name for proxies/forwards. */
  readonly dst: string
  readonly remote?: string | null
  readonly bytesUp: number
  readonly bytesDown: number
  readonly durationMs: number
  readonly result: 'ok' | 'error'
  readonly error?: string
}

/** A DNS query as passed to recordDns. */
export interface AuditDnsQuery {
  /** Default: now. */
  readonly time?: Date | string
  /** `addr:port` of the asking client. */
  readonly client: string
  readonly qname: string
  readonly qtype: string
  readonly route: 'tunnel' | 'cache' | 'local'
  readonly rcode: string
  readonly ms: number
}

export class AuditLog implements ConnObserver {
  private readonly lookups = new Map<number, Promise<ProcessInfo | null>>()
  private readonly processes: ConnProcesses
  private readonly ownProcesses: boolean
  private chain: Promise<void> = Promise.resolve()
  private pending = 0
  private readonly inFlight = new Set<Promise<void>>()
  private failed = false
  private dropped = 0
  private closed_ = false

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly opts: AuditLogOptions,
  ) {
    this.ownProcesses = opts.processes === undefined
    this.processes = opts.processes ?? new ConnProcesses()
  }

  /**
   * Opens (creating with mode 0600) path for appending — without following a symlink, and only
   * when it is a regular file of ours with one link (safe-file.ts): root must not append its lines
   * to a file another user made, or through a name that points elsewhere. An existing file of ours
   * that other users can read is tightened to 0600 (and the user is told).
   */
  static async open(path: string, opts: AuditLogOptions): Promise<AuditLog> {
    const refuse = (why: string, cause?: unknown): TunnelError =>
      new TunnelError('AUDIT_LOG', `audit log ${path}: ${why}`, {
        hint: `choose another file, or remove this one (rm ${shellQuote(path)}) and let subnet-tunnel create it`,
        cause,
      })
    let fh: FileHandle
    try {
      fh = await fs.open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | SAFE_OPEN_FLAGS, 0o600)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
        throw new TunnelError('AUDIT_LOG', `audit log ${path}: ${openFailureReason(e)}`, {
          hint: 'check that the directory exists and is writable, and that the path names a file',
          cause: e,
        })
      }
      throw refuse(openFailureReason(e), e)
    }
    try {
      const st = await fh.stat()
      const unsafe = unsafeFileReason(st)
      if (unsafe) throw refuse(unsafe)
      if ((st.mode & 0o077) !== 0 && effectiveUid() !== undefined) {
        await fh.chmod(0o600)
        opts.log.warn('ctl', `audit log ${path} was readable by other users; changed it to mode 0600`)
      }
    } catch (e) {
      await fh.close().catch(() => {})
      throw e instanceof TunnelError ? e : new TunnelError('AUDIT_LOG', `audit log ${path}: ${errorMessage(e)}`, { cause: e })
    }
    return new AuditLog(fh, path, opts)
  }

  /** ConnObserver: start the process lookup now, while the client's socket still exists. */
  opened(c: TrackedConn): void {
    try {
      this.lookups.set(c.meta.id, this.processes.start(c))
    } catch {
      // never into the data path
    }
  }

  /** ConnObserver: write the line once the lookup (if any) has finished. */
  closed(c: TrackedConn, end: ConnEnd): void {
    try {
      const id = c.meta.id
      const lookup = this.lookups.get(id) ?? Promise.resolve(null)
      this.lookups.delete(id)
      if (this.ownProcesses) this.processes.forget(id)
      const p = lookup
        .catch(() => null)
        .then((process) => this.append(connLine(c, end, process, this.opts.remoteFor)))
      this.inFlight.add(p)
      void p.finally(() => this.inFlight.delete(p))
    } catch {
      // never into the data path
    }
  }

  /** Appends a DNS query line. */
  recordDns(q: AuditDnsQuery): void {
    const time = q.time === undefined ? new Date().toISOString() : new Date(q.time).toISOString()
    this.append({ type: 'dns', ...q, time })
  }

  /** Lines dropped because the disk could not keep up. */
  get droppedLines(): number {
    return this.dropped
  }

  private append(record: object): void {
    if (this.closed_) return
    if (this.pending >= MAX_PENDING) {
      this.dropped++
      return
    }
    let line: string
    try {
      line = JSON.stringify(record) + '\n'
    } catch {
      return
    }
    this.pending++
    // One write per line, in order: the chain keeps two writes from racing on the offset of
    // a partially written line (O_APPEND makes each single write land whole at the end).
    this.chain = this.chain.then(async () => {
      try {
        await this.fh.write(line)
        this.failed = false
      } catch (e) {
        if (!this.failed) this.opts.log.warn('ctl', `audit log ${this.path}: write failed: ${errorMessage(e)}`)
        this.failed = true
      } finally {
        this.pending--
      }
    })
  }

  /** Waits for lines of connections already closed, then closes the file. */
  async close(): Promise<void> {
    if (this.closed_) return
    await Promise.all([...this.inFlight])
    this.closed_ = true
    await this.chain
    await this.fh.close().catch(() => {})
  }
}

function connLine(
  c: TrackedConn,
  end: ConnEnd,
  process: ProcessInfo | null,
  remoteFor: AuditLogOptions['remoteFor'],
): AuditConnLine {
  let remote: string | null | undefined
  if (remoteFor) {
    try {
      remote = remoteFor(c.dst) ?? null
    } catch {
      remote = null
    }
  }
  return {
    type: 'conn',
    time: new Date(end.endedAt).toISOString(),
    start: new Date(c.startedAt).toISOString(),
    id: c.meta.id,
    frontEnd: c.meta.frontEnd,
    process,
    src: formatHostPort(c.meta.srcAddress, c.meta.srcPort),
    dst: formatHostPort(c.dst.host, c.dst.port),
    ...(remoteFor ? { remote } : {}),
    bytesUp: c.bytesUp,
    bytesDown: c.bytesDown,
    durationMs: Math.max(0, end.endedAt - c.startedAt),
    result: end.error === undefined ? 'ok' : 'error',
    ...(end.error !== undefined ? { error: end.error } : {}),
  }
}
