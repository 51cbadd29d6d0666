/**
 * `subnet-tunnel routes`: what each running instance tunnels now and why — the networks given,
 * found on the bastion (--auto-nets), learnt from DNS answers (--route-by-name, until when),
 * and what stays direct (excludes, the SSH transport, this machine).
 */
import type { RouteStatus, StatusSnapshot } from './status-types'

const ORIGIN_TEXT: Record<RouteStatus['origin'], string> = {
  given: 'given',
  'auto-net': 'auto-net',
  learnt: 'learnt',
  excluded: 'excluded',
  'auto-exclude': 'auto-net exclude',
  transport: 'SSH transport',
  local: 'this machine',
}

/** One table per instance; `now` for "in 42 s". */
export function formatRoutes(instances: readonly StatusSnapshot[], now: number = Date.now()): string {
  if (instances.length === 0) return 'no subnet-tunnel instance is running'
  return instances.map((s) => formatOne(s, now)).join('\n')
}

function formatOne(s: StatusSnapshot, now: number): string {
  const rows = (s.routes ?? []).map((r) => [
    r.action === 'tunnel' ? 'tunnel' : 'direct',
    r.net,
    ORIGIN_TEXT[r.origin] + (r.via ? ` via ${r.via}` : ''),
    [r.why, r.until ? `until ${r.until.slice(11, 19)} (in ${Math.max(0, Math.round((Date.parse(r.until) - now) / 1000))} s)` : ''].filter(Boolean).join(', '),
  ])
  const header = ['ROUTE', 'NETWORK', 'ORIGIN', 'WHY']
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)))
  const lines = all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd())
  const title = `instance ${s.instanceId} · pid ${s.pid}${s.method ? ` · ${s.method}` : ''}`
  return [title, ...(rows.length === 0 ? ['  nothing is routed (proxies and forwards only)'] : lines.map((l) => `  ${l}`))].join('\n') + '\n'
}
