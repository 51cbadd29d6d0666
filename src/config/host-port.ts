/** "host:port", an IPv6 literal in brackets ("[fd00::1]:22"): the one form every message uses. */
export function formatHostPort(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
