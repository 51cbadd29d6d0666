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

/** The whole `status` output: one block per instance, or a one-line note when none run. */
export function formatStatus(snapshots: readonly StatusSnapshot[]): string {
  if (snapshots.length === 0) return 'no running instances\n'
  return snapshots.map(formatInstance).join('\n')
}

function formatInstance(s: StatusSnapshot): string {
  const out: string[] = []
  out.push(`instance ${s.instanceId} · pid ${s.pid} · v${s.version} · up ${humanDuration(s.uptimeS)} (since ${s.startedAt})`)
  const row = (label: string, value: string): void => {
    out.push(`  ${label.padEnd(11)}${value}`)
  }
  if (s.remotes.length === 0) row('remote', '-')
  for (const r of s.remotes) {
    const rc = r.reconnects === 1 ? '1 reconnect' : `${r.reconnects} reconnects`
    // More than one SSH connection only when the pool grew (a bastion's per-process fd limit).
    const conns = (r.sshConnections ?? 1) > 1 ? ` over ${r.sshConnections} SSH connections` : ''
    const engine = r.engine ? ` · ${r.engine}` : ''
    row('remote', `${r.name} (${r.hostPort}) ${r.state} · ${rc} · ${r.channelsOpen} channels open${conns}${engine}`)
  }
  if (s.subnets.length > 0) row('subnets', s.subnets.join(', '))
  if (s.excludes.length > 0) row('excludes', s.excludes.join(', '))
  if (s.method || s.listener || s.tun) {
    // Whose local connections ride the tunnel is said plainly: without --owner-only, everyone's.
    const users = s.ownerUid !== undefined ? `uid ${s.ownerUid} only` : 'every local user'
    row('capture', [s.method ?? '-', s.listener ? `listener ${s.listener}` : '', s.tun ? tunText(s.tun) : '', users].filter(Boolean).join(' · '))
  }
  if (s.gateway) row('gateway', s.gateway)
  if (s.proxies.length > 0) row('proxies', s.proxies.map((p) => `${p.kind} ${p.address}`).join(', '))
  for (const f of s.forwards) {
    row('forward', `${f.kind === 'local' ? '-L' : '-R'} ${f.spec} on ${f.address}`)
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
  if (s.connections.length > 0) {
    out.push('')
    out.push(...connectionTable(s.connections).map((l) => '  ' + l))
  }
  return out.join('\n') + '\n'
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
