import net from 'node:net'
import { TunnelError } from '../errors'
import { formatHostPort } from './host-port'

export interface BindAddress {
  readonly host: string
  readonly port: number
}

/**
 * Parses a proxy listen address like ssh -D: "PORT", "HOST:PORT", "[V6]:PORT", "*:PORT"
 * (all addresses). Without a host the proxy binds 127.0.0.1, so nothing outside this machine
 * can use it unless the user says so explicitly.
 */
export function parseBindAddress(spec: string, option: string): BindAddress {
  const s = spec.trim()
  let host = '127.0.0.1'
  let portText = s
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s)
  const v4 = /^([^:]*):(\d+)$/.exec(s)
  if (v6) {
    host = v6[1]
    portText = v6[2]
  } else if (v4) {
    host = v4[1] === '' || v4[1] === '*' ? '0.0.0.0' : v4[1]
    portText = v4[2]
  }
  const port = Number(portText)
  const bad = (why: string): TunnelError =>
    new TunnelError('USAGE', `${option} "${spec}": ${why}`, { hint: `use ${option} PORT or ${option} 127.0.0.1:PORT` })
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw bad('not a port from 1 to 65535')
  if (host === 'localhost') host = '127.0.0.1'
  if (net.isIP(host) === 0) throw bad(`"${host}" is not an IP address`)
  return { host, port }
}

export function formatBind(b: BindAddress): string {
  return formatHostPort(b.host, b.port)
}

/** "user:pass" for --proxy-auth; the password may contain ':'. */
export function parseProxyAuth(s: string): { username: string; password: string } {
  const i = s.indexOf(':')
  if (i <= 0 || i === s.length - 1) {
    throw new TunnelError('USAGE', '--proxy-auth needs USER:PASSWORD', {
      hint: 'or set SUBNET_TUNNEL_PROXY_AUTH=USER:PASSWORD, which other users cannot see in ps',
    })
  }
  return { username: s.slice(0, i), password: s.slice(i + 1) }
}
