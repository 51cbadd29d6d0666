/**
 * Human output of `subnet-tunnel status` (pure: snapshots in, text out). `--json` does not come
 * here; it prints the snapshots as they are.
 */
import type { ConnectionStatus, ProcessInfo, StatusSnapshot } from './status-types'

/** 1234567 → "1.2 MB". Decimal units, like curl and most download UIs. */
export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB']
  let v = Math.max(0, n)
  let i = 0
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000
    i++
  }
  if (i === 0) return `${Math.round(v)} B`
  return `${v < 10 ? v.toFixed(1) : Math.round(v).toString()} ${units[i]}`
}

/** Seconds → "45s", "3m12s", "2h05m", "3d04h". */
export function humanDuration(totalS: number): string {
  const s = Math.max(0, Math.floor(totalS))
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  const two = (x: number): string => x.toString().padStart(2, '0')
  if (d > 0) return `${d}d${two(h)}h`
  if (h > 0) return `${h}h${two(m)}m`
  if (m > 0) return `${m}m${two(sec)}s`
  return `${sec}s`
}

/** "curl (4242)", "uid 1000" when only the owner is known, "-" when nothing is. */
export function processLabel(p: ProcessInfo | undefined, max = 28): string {
  if (!p) return '-'
  if (p.pid === null) return `uid ${p.uid}`
  const argv0 = (p.command ?? '?').split(' ')[0]
  const name = argv0.startsWith('[') ? argv0 : argv0.slice(argv0.lastIndexOf('/') + 1)
  const suffix = ` (${p.pid})`
  const room = Math.max(4, max - suffix.length)
  return (name.length > room ? name.slice(0, room - 1) + '…' : name) + suffix
}

/** "1 channel", "2 channels". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

export interface FormatOptions {
  /** The reader's network namespace: instances of another one are labelled. */
  readonly netns?: number
  /** Instances left out because they run in other network namespaces (for the closing note). */
  readonly otherNetns?: number
  /** Now, for "5m ago" (tests). */
  readonly now?: number
}

/** The whole `status` output: one block per instance, or a one-line note when none run. */
export function formatStatus(snapshots: readonly StatusSnapshot[], o: FormatOptions = {}): string {
  const others = o.otherNetns
    ? `${plural(o.otherNetns, 'instance')} in other network namespaces: subnet-tunnel status --all\n`
    : ''
  if (snapshots.length === 0) return (o.otherNetns ? 'no running instances in this network namespace; ' : 'no running instances\n') + others
  return snapshots.map((s) => formatInstance(s, o)).join('\n') + (others ? '\n' + others : '')
}

function formatInstance(s: StatusSnapshot, o: FormatOptions): string {
  const out: string[] = []
  const ns = o.netns !== undefined && s.netns !== undefined && s.netns !== o.netns ? ` · netns ${s.netns} (another network namespace)` : ''
  const profile = s.profile ? ` · profile ${s.profile}` : ''
  out.push(`instance ${s.instanceId}${profile} · pid ${s.pid} · v${s.version} · up ${humanDuration(s.uptimeS)} (since ${s.startedAt})${ns}`)
  const row = (label: string, value: string): void => {
    out.push(`  ${label.padEnd(11)}${value}`)
  }
  if (s.remotes.length === 0) row('remote', '-')
  for (const r of s.remotes) {
    // More than one SSH connection only when the pool grew (a bastion's per-process fd limit).
    const conns = (r.sshConnections ?? 1) > 1 ? ` over ${r.sshConnections} SSH connections` : ''
    const engine = r.engine ? ` · ${r.engine}` : ''
    row('remote', `${r.name} (${r.hostPort}) ${r.state} · ${plural(r.reconnects, 'reconnect')} · ${plural(r.channelsOpen, 'channel')} open${conns}${engine}`)
  }
  if (s.subnets.length > 0) row('subnets', s.subnets.join(', '))
  if (s.excludes.length > 0) row('excludes', s.excludes.join(', '))
  if (s.method || s.listener || s.tun) {
    // Whose local connections ride the tunnel is said plainly: without --owner-only, everyone's.
    const uid = s.ownerUid !== undefined ? `uid ${s.ownerUid} only` : 'every local user'
    const users = s.execOnly ? `the exec --only command only${s.ownerUid !== undefined ? ` (uid ${s.ownerUid})` : ''}` : uid
    row('capture', [s.method ?? '-', s.listener ? `listener ${s.listener}` : '', s.tun ? tunText(s.tun) : '', users].filter(Boolean).join(' · '))
  }
  if (s.failClosed) {
    row('guard', s.failClosed === 'open'
      ? 'fail-closed, armed (the kernel refuses the subnets while SSH is down and after exit)'
      : 'fail-closed, CLOSED: SSH is down, the kernel refuses the subnets')
  }
  if (s.gateway) row('gateway', s.gateway)
  if (s.proxies.length > 0) row('proxies', s.proxies.map((p) => `${p.kind} ${p.address}`).join(', '))
  // Where it listens (the port actually bound) and where it goes, each once.
  for (const f of s.forwards) {
    const to = f.target ? ` → ${f.target}` : ` (${f.spec})`
    row('forward', f.kind === 'local' ? `-L ${f.address}${to}` : `-R bastion ${f.address}${to}`)
  }
  if (s.dns) {
    const d = s.dns
    const pct = d.queries > 0 ? Math.round((100 * d.cacheHits) / d.queries) : 0
    row(
      'dns',
      `${d.queries} queries · ${pct}% cache · ${d.tunnel} tunnel · ${d.local} local · ${d.failed} failed` +
        ` (${d.servers.join(', ') || '-'} → ${d.remote.join(', ') || '-'})`,
    )
  }
  const t = s.totals
  row(
    'traffic',
    `${t.active} active · ${t.total} total · ${t.failed} failed · ${humanBytes(t.bytesUp)} ↑ · ${humanBytes(t.bytesDown)} ↓`,
  )
  if (s.logFile || s.lastError) {
    const last = s.lastError ? `last problem ${ago(s.lastError.at, o.now)}: ${s.lastError.message}` : ''
    row('log', [s.logFile ?? '', last].filter(Boolean).join(' · '))
  }
  row('stop', `subnet-tunnel stop ${s.profile ?? s.instanceId}`)
  if (s.connections.length > 0) {
    out.push('')
    out.push(...connectionTable(s.connections).map((l) => '  ' + l))
  }
  return out.join('\n') + '\n'
}

/** "3m12s ago" from an ISO time. */
function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso)
  return Number.isNaN(t) ? iso : `${humanDuration((now - t) / 1000)} ago`
}

/** Aligned table of connections, oldest first. */
function connectionTable(conns: readonly ConnectionStatus[]): string[] {
  const sorted = [...conns].sort((a, b) => b.ageS - a.ageS || a.id - b.id)
  const rows = sorted.map((c) => [
    `#${c.id}`,
    c.frontEnd,
    processLabel(c.process),
    `${c.src} → ${c.dst}`,
    humanBytes(c.bytesUp),
    humanBytes(c.bytesDown),
    humanDuration(c.ageS),
  ])
  const header = ['ID', 'FRONT-END', 'PROCESS', 'SOURCE → DESTINATION', 'UP', 'DOWN', 'AGE']
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)))
  // Numbers right-aligned, text left-aligned; no trailing spaces.
  const right = new Set([4, 5, 6])
  return all.map((r) =>
    r
      .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]) : i === r.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  )
}

/** "device st1a2b3c4d · engine tun2socks 2.5.2 (1 restart)". */
function tunText(t: NonNullable<StatusSnapshot['tun']>): string {
  const restarts = t.restarts > 0 ? ` (${t.restarts} restart${t.restarts === 1 ? '' : 's'})` : ''
  return `device ${t.device} · engine ${t.engine}${t.engineVersion ? ` ${t.engineVersion}` : ''}${restarts}`
}
