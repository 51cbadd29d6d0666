'use strict'
/**
 * Ports for the bench's own listeners (ssh -L's local port, the RTT relays), chosen outside the
 * ephemeral range of the namespace they are bound in.
 *
 * Why: a port inside that range can be handed to an outgoing connection at any moment, and a
 * connection (or its TIME_WAIT) holding it makes a later bind() fail. The testbed's namespaces
 * run with a widened range (testbed.js: connrate needs it), so fixed ports such as 20000 + the
 * target port fell inside it: `ssh -L 29100:…` failed with "Address already in use" after the
 * 1,000-connection row, and the run crashed. A port the kernel will never pick for connect()
 * cannot collide that way; what does listen there already is read from `ss` and skipped.
 * Listeners that need no port in advance (our HTTP and echo servers) bind port 0 and report
 * the one they got.
 */
const { runToEnd } = require('./proc')

/** Lowest port the bench takes: below are well-known services (sshd 22, dnsmasq 53, http 80…). */
const FLOOR = 1024
const CEILING = 65535

/** "32768\t60999\n" (/proc/sys/net/ipv4/ip_local_port_range) → [32768, 60999]. */
function parsePortRange(text) {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text || '')
  if (!m) throw new Error(`ip_local_port_range: unexpected ${JSON.stringify(text)}`)
  const lo = Number(m[1])
  const hi = Number(m[2])
  if (!(lo >= 1 && hi <= CEILING && lo <= hi)) throw new Error(`ip_local_port_range: bad range ${lo}-${hi}`)
  return [lo, hi]
}

/**
 * Local ports of `ss -Hltnu` lines (TCP listeners and bound UDP sockets). With both -t and -u
 * ss adds a Netid column first; the local address (`ip:port`, `[v6]:port`, `ip%dev:port`,
 * `*:port`) is the first field ending in `:digits` — the peer's ends in `:*`.
 */
function parseListeningPorts(text) {
  const out = new Set()
  for (const line of (text || '').split('\n')) {
    const local = line.trim().split(/\s+/).slice(3).find((f) => /:\d+$/.test(f))
    if (local) out.add(Number(/:(\d+)$/.exec(local)[1]))
  }
  return out
}

/**
 * A free port outside the ephemeral range `range` ([lo, hi]) and not in `taken`: the highest
 * one below lo first (down to FLOOR), else the lowest above hi. Throws when there is none.
 * Below first: sshuttle searches 12300 → 9000 for its own listener, so the top of the gap
 * under a range that starts at 16384 stays clear of it.
 */
function pickPort(range, taken = new Set(), { floor = FLOOR, ceiling = CEILING } = {}) {
  const [lo, hi] = range
  for (let p = lo - 1; p >= floor; p--) if (!taken.has(p)) return p
  for (let p = hi + 1; p <= ceiling; p++) if (!taken.has(p)) return p
  throw new Error(`no free port outside the ephemeral range ${lo}-${hi} (${floor}-${ceiling}, ${taken.size} taken)`)
}

/**
 * Hands out ports per namespace role. Each take() reads what listens in that namespace now
 * and never hands the same port out twice in a run, so a port a stopped contender's sockets
 * may still linger on is not reused.
 * @param tb the testbed (tb.ns: role → namespace name)
 * @param run argv → { code, stdout } (runToEnd; injectable)
 */
function portBook(tb, run = runToEnd) {
  const ranges = {}
  const given = {} // role → Set of ports handed out
  const inNs = (role, argv) => run(['ip', 'netns', 'exec', tb.ns[role], ...argv], { timeoutMs: 10_000 })
  return {
    /** The ephemeral range as the namespace itself reports it (read once per role). */
    async range(role) {
      if (!ranges[role]) {
        const r = await inNs(role, ['cat', '/proc/sys/net/ipv4/ip_local_port_range'])
        if (r.code !== 0) throw new Error(`reading ip_local_port_range in ${tb.ns[role]}: ${(r.stderr || '').trim()}`)
        ranges[role] = parsePortRange(r.stdout)
      }
      return ranges[role]
    },
    /** A port for a new listener in namespace `role`. */
    async take(role) {
      const range = await this.range(role)
      const ss = await inNs(role, ['ss', '-Hltnu'])
      if (ss.code !== 0) throw new Error(`ss in ${tb.ns[role]}: ${(ss.stderr || '').trim()}`)
      const mine = (given[role] = given[role] || new Set())
      const port = pickPort(range, new Set([...parseListeningPorts(ss.stdout), ...mine]))
      mine.add(port)
      return port
    },
    /** Ranges read so far, for the report. */
    ranges: () => ({ ...ranges }),
  }
}

module.exports = { FLOOR, parsePortRange, parseListeningPorts, pickPort, portBook }
