import { TunnelError } from '../errors'

export interface ListenAddress {
  readonly host: string
  readonly port: number
}

// The kernel's REDIRECT/`redirect` sends locally generated packets to the primary loopback
// address (127.0.0.1, ::1), so the transparent listener must be reachable there.
const ALLOWED = new Set(['127.0.0.1', '0.0.0.0', 'localhost'])

/** Parses --listen "[ip:]port" (port 0 = pick a free one). */
export function parseListen(s: string | undefined): ListenAddress {
  if (s === undefined) return { host: '127.0.0.1', port: 0 }
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(s.trim())
  const port = m ? Number(m[2]) : NaN
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new TunnelError('USAGE', `invalid --listen "${s}"`, { hint: 'use PORT or 127.0.0.1:PORT' })
  }
  const host = m[1] ?? '127.0.0.1'
  if (!ALLOWED.has(host)) {
    throw new TunnelError('USAGE', `--listen ${host}: the transparent listener must be on 127.0.0.1 or 0.0.0.0`, {
      hint: 'the kernel redirects captured connections to 127.0.0.1 (and ::1); give only the port',
    })
  }
  return { host: host === 'localhost' ? '127.0.0.1' : host, port }
}
