'use strict'
/**
 * The bench's own testbed (scripts/testbed up bench<N>), always torn down through the cleanup
 * stack. Extra setup the bench needs (an RTT relay, its ssh config) lives here and in the
 * bench's temp dir, never in scripts/testbed.
 */
const fs = require('node:fs')
const path = require('node:path')
const { onCleanup } = require('./cleanup')
const { runToEnd } = require('./proc')

const REPO_DIR = path.resolve(__dirname, '..', '..')
const TESTBED = path.join(REPO_DIR, 'scripts', 'testbed')
const BASE_DIR = process.env.TESTBED_DIR || '/run/subnet-tunnel-testbed'
/**
 * Ephemeral ports in the bench's namespaces: 49,152 of them (the default has 28,232), an even
 * first and odd last port as the kernel prefers (connect() takes even ones, bind(0) odd ones).
 */
const EPHEMERAL_RANGE = '16384 65535'

/** The first bench<N> testbed name whose namespaces and state dir do not exist. */
function pickName() {
  for (let n = 1; n < 1000; n++) {
    const name = `bench${n}`
    const taken = ['client', 'bastion', 'private'].some((r) => fs.existsSync(`/run/netns/st-${name}-${r}`))
    if (!taken && !fs.existsSync(path.join(BASE_DIR, name))) return name
  }
  throw new Error('no free bench<N> testbed name (1-999 all taken?)')
}

/** ST_FOO_BAR='v' lines → { fooBar: 'v' }; any other non-empty line is an error. */
function parseEnv(text) {
  const env = {}
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const m = /^ST_([A-Z0-9_]+)='((?:[^']|'\\'')*)'$/.exec(line)
    if (!m) throw new Error(`testbed env: unexpected line ${JSON.stringify(line)}`)
    const key = m[1].toLowerCase().replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase())
    env[key] = m[2].replace(/'\\''/g, "'")
  }
  return env
}

/**
 * Brings a testbed up (its teardown registered first) and returns its environment.
 * opts.sshdNofile: the bastion sshd's soft open-files limit (scripts/testbed --sshd-nofile).
 */
async function upTestbed(name, opts = {}) {
  onCleanup(`testbed down ${name}`, async () => {
    const r = await runToEnd([TESTBED, 'down', name], { timeoutMs: 60_000 })
    if (r.code !== 0) throw new Error(`scripts/testbed down ${name}: ${r.stderr.trim()}`)
  })
  const extra = opts.sshdNofile ? ['--sshd-nofile', String(opts.sshdNofile)] : []
  const up = await runToEnd([TESTBED, 'up', name, ...extra], { timeoutMs: 120_000 })
  if (up.code !== 0) throw new Error(`scripts/testbed up ${name} failed:\n${up.stderr.trim()}`)
  const env = await runToEnd([TESTBED, 'env', name])
  if (env.code !== 0) throw new Error(`scripts/testbed env ${name}: ${env.stderr.trim()}`)
  const tb = parseEnv(env.stdout)
  tb.ns = { client: tb.clientNs, bastion: tb.bastionNs, private: tb.privateNs }
  // Connection-rate rows open tens of thousands of short connections to one destination: with
  // the default 28k ephemeral ports and 60 s of TIME_WAIT, one row at 9,000 conn/s (the
  // no-tunnel reference) left every later row — of every contender — capped at ~470 conn/s by
  // the bastion's free ports to the target. Wide ports and TIME_WAIT reuse in our namespaces
  // make rows independent of what ran before. The range stops short of 1024..16383 on purpose:
  // that is where the bench's own listeners go (ports.js), out of connect()'s reach.
  for (const ns of Object.values(tb.ns)) {
    const r = await runToEnd(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', `net.ipv4.ip_local_port_range=${EPHEMERAL_RANGE}`, 'net.ipv4.tcp_tw_reuse=1'])
    if (r.code !== 0) throw new Error(`sysctl in ${ns}: ${r.stderr.trim()}`)
  }
  return tb
}

/** argv running argv inside the testbed namespace of role (ip netns exec execs it: same pid). */
function nsArgv(tb, role, argv) {
  return ['ip', 'netns', 'exec', tb.ns[role], ...argv]
}

/**
 * Writes an ssh_config (and its known_hosts) with one alias per { alias, port } entry, all for
 * the testbed's bastion: port 22 is sshd itself, other ports are RTT relays in front of it.
 * known_hosts needs a `[host]:port` line per non-22 port, as OpenSSH looks those up.
 * `extra` (optional) adds ssh_config lines to that alias (e.g. `Ciphers …`).
 * @returns the path of the ssh_config
 */
function writeSshConfig(tb, dir, hosts) {
  const hostKeys = fs
    .readFileSync(tb.knownHosts, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${tb.bastionIp} `))
  const known = []
  const config = []
  for (const { alias, port, extra = [] } of hosts) {
    for (const l of hostKeys) known.push(port === 22 ? l : l.replace(`${tb.bastionIp} `, `[${tb.bastionIp}]:${port} `))
    config.push(
      `Host ${alias}`,
      `  HostName ${tb.bastionIp}`,
      '  User root',
      `  Port ${port}`,
      `  IdentityFile ${tb.sshKey}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${path.join(dir, 'known_hosts')}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      ...extra.map((l) => `  ${l}`),
      '',
    )
  }
  fs.writeFileSync(path.join(dir, 'known_hosts'), [...new Set(known)].join('\n') + '\n')
  const file = path.join(dir, 'ssh_config')
  fs.writeFileSync(file, config.join('\n'))
  return file
}

module.exports = { REPO_DIR, BASE_DIR, EPHEMERAL_RANGE, pickName, parseEnv, upTestbed, nsArgv, writeSshConfig }
