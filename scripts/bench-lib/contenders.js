'use strict'
/**
 * Starting the things that get compared — subnet-tunnel, sshuttle and ssh -L — and the
 * RTT relay they connect through. Each runs in the testbed's client namespace (the relay in the
 * bastion's), is ready when it says so, and is stopped by pid through the cleanup stack.
 */
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { startDaemon, runToEnd, descendantsOf } = require('./proc')
const { parseVmRss, parsePss, parseStatCpuTicks, parseNofileLimits } = require('./perf-parse')
const { REPO_DIR, nsArgv } = require('./testbed')
const { leftoversIn } = require('./leftovers')
const { oursContender } = require('./ours')

const CLI_BIN = path.join(REPO_DIR, 'bin', 'subnet-tunnel.js')
const RELAY = path.join(__dirname, 'delay-relay.js')

/** No agent socket from the caller's session, no TTY prompts: only the testbed key is used. */
function cleanEnv(extra = {}) {
  const env = { ...process.env, SUBNET_TUNNEL_NO_TTY: '1', ...extra }
  delete env.SSH_AUTH_SOCK
  return env
}

/**
 * Wraps handle.stop so that, once the process is gone, the client namespace is checked for
 * what it may have left: firewall rules (chains/tables matching `mark`), and the TUN path's
 * link, policy rules and routing table (leftovers.js) — checked after every contender, as a
 * leak from one would skew the next. Leftovers are reported (progress line, and in
 * ctx.teardown when the bench keeps a record), not fatal.
 */
function checkRulesOnStop(ctx, handle, mark) {
  const stop = handle.stop
  handle.stop = async () => {
    await stop()
    const dump = (argv) => runToEnd(nsArgv(ctx.tb, 'client', argv), { timeoutMs: 10_000 }).then((r) => r.stdout)
    const [ipt, nft, links, rules4, rules6, routes4, routes6] = await Promise.all([
      dump(['iptables-save']),
      dump(['nft', 'list', 'ruleset']),
      dump(['ip', '-o', 'link', 'show']),
      dump(['ip', '-4', 'rule', 'show']),
      dump(['ip', '-6', 'rule', 'show']),
      dump(['ip', '-4', 'route', 'show', 'table', 'all']),
      dump(['ip', '-6', 'route', 'show', 'table', 'all']),
    ])
    const left = leftoversIn({ firewall: ipt + '\n' + nft, links, rules: rules4 + '\n' + rules6, routes: routes4 + '\n' + routes6 }, mark)
    if (ctx.teardown) {
      ctx.teardown.stops++
      if (left.length) ctx.teardown.leftovers.push({ label: handle.label, left })
    }
    if (left.length) ctx.progress(`warning: ${handle.label} left behind in the client namespace: ${left.slice(0, 3).join(' | ')}`)
  }
  return handle
}

/** This process's hard open-files limit (what prlimit may raise a soft limit to without privileges it lacks). */
function hardNofile() {
  const l = parseNofileLimits(fs.readFileSync('/proc/self/limits', 'utf8'))
  return l ? l.hard : 1024
}

/**
 * argv run with a soft open-files limit of `nofile` (capped at our hard limit), through
 * prlimit, which execs the command: the pid stays the tool's own. Under sudo the soft limit
 * is usually 1,024: too few for the 10,000-connection suite on the client side, which should
 * measure the tunnel and the bastion, not the client's ulimit. Node raises its own soft limit
 * to the hard one at start; ssh and sshuttle do not, hence the wrapper for every contender.
 */
function withNofile(argv, nofile) {
  if (!nofile) return argv
  const n = Math.min(nofile, hardNofile())
  return ['prlimit', `--nofile=${n}:`, ...argv]
}

/**
 * subnet-tunnel to the testbed's private net through ssh alias `alias` of ctx.sshConfig.
 * opts.method: `nat` by default (like sshuttle's default, so both use the same kernel
 * redirect), `nft`, or `tun` (TUN device + built-in engine: needs root and /dev/net/tun, which
 * the bench has). opts.nofile: soft open-files limit (withNofile).
 */
function startSubnetTunnel(ctx, alias, args, opts = {}) {
  const method = opts.method || 'nat'
  const argv = nsArgv(ctx.tb, 'client', withNofile([
    process.execPath, CLI_BIN, '-F', ctx.sshConfig, '-r', alias, '--method', method, ctx.tb.privateNet, ...args,
  ], opts.nofile))
  // The CLI prints one line containing "up:" once SSH is up and the rules (or the TUN device
  // and its routes) are in place.
  const label = `subnet-tunnel --method ${method}${args.length ? ' ' + args.join(' ') : ''}`
  return startDaemon(argv, { label, ready: /\bup:/, env: cleanEnv() }).then((h) => checkRulesOnStop(ctx, h, /subnet-tunnel/))
}

/**
 * sshuttle (1.1) through the same ssh alias. It runs ssh itself (-e) and needs python3 on the
 * server, which the bastion namespace shares with this machine. It must run inside the client
 * namespace: its firewall rules (method nat) go there, and are deleted with the namespace even
 * if it died without restoring them.
 */
function startSshuttle(ctx, alias, args, opts = {}) {
  const argv = nsArgv(ctx.tb, 'client', withNofile([
    'sshuttle', '-r', alias, '--method', 'nat', '-e', `ssh -F ${ctx.sshConfig}`, ctx.tb.privateNet, ...args,
  ], opts.nofile))
  const label = `sshuttle ${args.join(' ')}`
  // Stopped with SIGTERM: sshuttle exits at once and its firewall child (`sshuttle --firewall`)
  // restores the rules when it sees its parent gone; startDaemon's stop waits for that child.
  return startDaemon(argv, { label, ready: /Connected to server\./, env: cleanEnv() }).then((h) => checkRulesOnStop(ctx, h, /sshuttle/))
}

/**
 * A delay relay in the bastion namespace: listenPort → sshd:22, RTT/2 each way, so everything
 * that connects through it sees the emulated RTT (the kernel here has no netem).
 */
function startRelay(ctx, listenPort, rttMs) {
  const ip = ctx.tb.bastionIp
  const argv = nsArgv(ctx.tb, 'bastion', [
    process.execPath, RELAY, '--listen', `${ip}:${listenPort}`, '--to', `${ip}:22`, '--delay-ms', String(rttMs / 2),
  ])
  return startDaemon(argv, { label: `delay relay ${rttMs} ms`, ready: /^listening /m, readyTimeoutMs: 10_000 })
}

/** The cipher every TCP suite pins for OpenSSH (ssh -L and sshuttle's ssh), for a fair comparison. */
const BENCH_CIPHER = 'aes128-gcm@openssh.com'

/**
 * OpenSSH's own local forward, `ssh -N -L 127.0.0.1:localPort:host:port`, in the client
 * namespace. Ready when LocalCommand runs: ssh runs it after the forwards are set up.
 */
function startSshForward(ctx, alias, localPort, host, port, opts = {}) {
  const argv = nsArgv(ctx.tb, 'client', withNofile([
    'ssh', '-F', ctx.sshConfig, '-N', '-c', BENCH_CIPHER, '-o', 'ExitOnForwardFailure=yes',
    '-o', 'PermitLocalCommand=yes', '-o', 'LocalCommand=echo forward-ready',
    '-L', `127.0.0.1:${localPort}:${host}:${port}`, alias,
  ], opts.nofile))
  return startDaemon(argv, { label: `ssh -L ${localPort}:${host}:${port}`, ready: /forward-ready/, env: cleanEnv() })
}

/**
 * The ways the TCP suites reach tb.privateIp:port, compared in the same run: our paths
 * (opts.ours, in that order; default nat alone), then ssh -L and sshuttle. start(alias, port)
 * resolves { handle, host, port }: where a client in the client namespace connects.
 * Local ports for ssh -L: 20000 + the target port (the client namespace is ours alone).
 * opts.nofile: soft open-files limit of every contender (withNofile); all get the same.
 */
function tcpContenders(ctx, opts = {}) {
  const ip = ctx.tb.privateIp
  const ours = (opts.ours || ['nat']).map((method) => ({
    ...oursContender(method), kind: 'ours', method,
    start: async (alias, port) => ({ handle: await startSubnetTunnel(ctx, alias, [], { ...opts, method }), host: ip, port }),
  }))
  return [
    ...ours,
    {
      contender: 'ssh -L', kind: 'competitor', label: `ssh -N -L (${BENCH_CIPHER.split('@')[0]})`,
      start: async (alias, port) => ({ handle: await startSshForward(ctx, alias, 20000 + port, ip, port, opts), host: '127.0.0.1', port: 20000 + port }),
    },
    {
      contender: 'sshuttle', kind: 'competitor', label: 'sshuttle --method nat',
      start: async (alias, port) => ({ handle: await startSshuttle(ctx, alias, [], opts), host: ip, port }),
    },
  ]
}

/**
 * ssh aliases of the TCP suites: OpenSSH pinned to BENCH_CIPHER (ssh -L passes -c too;
 * sshuttle's ssh reads it from here). subnet-tunnel ignores Ciphers and picks its own order,
 * which puts aes128-gcm first on a CPU with AES-NI.
 */
function tcpSshHosts(rtts) {
  return rtts.map((r) => ({ alias: `bench-gcm-rtt${r}`, port: r > 0 ? 10000 + r : 22, extra: [`Ciphers ${BENCH_CIPHER}`] }))
}

/**
 * Sum of VmRSS (bytes) of pid and, unless `alone`, its descendants (sshuttle's ssh and firewall
 * helper, subnet-tunnel's privileged helper count: the tool needs them all).
 */
function treeRss(pid, alone = false) {
  return sumOverTree(pid, alone, (p) => parseVmRss(fs.readFileSync(`/proc/${p}/status`, 'utf8')))
}

/** Like treeRss, with PSS: pages shared inside the tree (the node binary, libraries) count once. */
function treePss(pid) {
  return sumOverTree(pid, false, (p) => parsePss(fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8')))
}

function sumOverTree(pid, alone, read) {
  let total = 0
  for (const p of alone ? [pid] : [pid, ...descendantsOf(pid)]) {
    try {
      total += read(p) || 0
    } catch {
      // exited meanwhile
    }
  }
  return total
}

let clockTicks
/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK; 100 on every Linux we know). */
function ticksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/**
 * CPU time so far (utime + stime) of pid and its descendants: a Map pid → clock ticks. All of
 * a contender's processes on the client side count: subnet-tunnel's main process and its
 * privileged helper, ssh -L's ssh, sshuttle's python client, its ssh and its firewall helper.
 */
function treeCpuTicks(pid) {
  const out = new Map()
  for (const p of [pid, ...descendantsOf(pid)]) {
    try {
      out.set(p, parseStatCpuTicks(fs.readFileSync(`/proc/${p}/stat`, 'utf8')))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/**
 * CPU seconds spent between two treeCpuTicks snapshots (a process new in `after` counts from
 * zero; one gone by then is lost — none of the contenders' processes come and go per stream).
 */
function cpuSecondsBetween(before, after) {
  let ticks = 0
  for (const [p, t] of after) ticks += t - (before.get(p) || 0)
  return ticks / ticksPerSecond()
}

module.exports = {
  CLI_BIN, BENCH_CIPHER, startSubnetTunnel, startSshuttle, startRelay, startSshForward, tcpContenders, tcpSshHosts, treeRss, treePss,
  treeCpuTicks, cpuSecondsBetween, withNofile, hardNofile,
}
