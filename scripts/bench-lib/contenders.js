'use strict'
/**
 * Starting the things that get compared — subnet-tunnel (each method × SSH engine), sshuttle
 * and ssh -L — and the RTT relay they connect through. Each runs in the testbed's client
 * namespace (the relay in the bastion's), is ready when it says so, and is stopped by pid
 * through the cleanup stack. Every listener the bench opens gets its port from ctx.ports
 * (ports.js: outside the namespace's ephemeral range); subnet-tunnel binds port 0 itself.
 */
const fs = require('node:fs')
const path = require('node:path')
const { startDaemon, runToEnd, sleep } = require('./proc')
const { parseNofileLimits } = require('./perf-parse')
const { REPO_DIR, nsArgv } = require('./testbed')
const { leftoversIn } = require('./leftovers')
const { oursContender, oursRows } = require('./ours')
const { engineArgs } = require('./engines')

const CLI_BIN = path.join(REPO_DIR, 'bin', 'subnet-tunnel.js')
const RELAY = path.join(__dirname, 'delay-relay.js')

/** No agent socket from the caller's session, no TTY prompts: only the testbed key is used. */
function cleanEnv(extra = {}) {
  const env = { ...process.env, SUBNET_TUNNEL_NO_TTY: '1', ...extra }
  delete env.SSH_AUTH_SOCK
  return env
}

/**
 * An afterStop (proc.js) that, once the process is gone — after a clean stop, a crash or a
 * failed start alike — checks the client namespace for what it may have left: firewall rules
 * (chains/tables matching `mark`), and the TUN path's link, policy rules and routing table
 * (leftovers.js). Checked after every contender, as a leak from one would skew the next.
 * Leftovers are reported (progress line, and in ctx.teardown), not fatal; nor is a check
 * that could not run (reported as such).
 */
function leftoverCheck(ctx, mark) {
  return async (handle) => {
    try {
      const dump = async (argv) => {
        const r = await runToEnd(nsArgv(ctx.tb, 'client', argv), { timeoutMs: 10_000 })
        if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code} ${r.stderr.trim().slice(0, 200)}`)
        return r.stdout
      }
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
    } catch (e) {
      if (ctx.teardown) ctx.teardown.uncheckable.push({ label: handle.label, why: e.message })
      ctx.progress(`warning: leftover check after ${handle.label} could not run: ${e.message}`)
    }
  }
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
 * redirect), `nft`, or `tun` (TUN device + built-in userspace stack: needs /dev/net/tun).
 * opts.engine: the SSH engine, passed as --ssh-engine when the CLI has that option
 * (ctx.engineFlag; without it the CLI runs builtin only). opts.nofile: soft open-files limit.
 */
function startSubnetTunnel(ctx, alias, args, opts = {}) {
  const method = opts.method || 'nat'
  const engine = opts.engine || 'builtin'
  const argv = nsArgv(ctx.tb, 'client', withNofile([
    process.execPath, CLI_BIN, '-F', ctx.sshConfig, '-r', alias, '--method', method, ...engineArgs(engine, ctx.engineFlag),
    ctx.tb.privateNet, ...args,
  ], opts.nofile))
  // The CLI prints one line containing "up:" once SSH is up and the rules (or the TUN device
  // and its routes) are in place.
  const label = `subnet-tunnel ${method}/${engine}${args.length ? ' ' + args.join(' ') : ''}`
  return startDaemon(argv, { label, ready: /\bup:/, env: cleanEnv(), afterStop: leftoverCheck(ctx, /subnet-tunnel/) })
}

/**
 * sshuttle (1.1) through the same ssh alias. It runs ssh itself (-e) and needs python3 on the
 * server, which the bastion namespace shares with this machine. It must run inside the client
 * namespace: its firewall rules (method nat) go there, and are deleted with the namespace even
 * if it died without restoring them. Its TCP listener gets a port from ctx.ports (--listen;
 * opts.listenPort when the caller took it before its clock started); with --dns it binds the
 * DNS one itself, trying 12300 down to 9000 until a bind succeeds.
 */
async function startSshuttle(ctx, alias, args, opts = {}) {
  const port = opts.listenPort ?? (await ctx.ports.take('client'))
  const argv = nsArgv(ctx.tb, 'client', withNofile([
    'sshuttle', '-r', alias, '--method', 'nat', '--listen', `127.0.0.1:${port}`, '-e', `ssh -F ${ctx.sshConfig}`, ctx.tb.privateNet, ...args,
  ], opts.nofile))
  const label = `sshuttle${args.length ? ' ' + args.join(' ') : ''}`
  // Stopped with SIGTERM: sshuttle exits at once and its firewall child (`sshuttle --firewall`)
  // restores the rules when it sees its parent gone; startDaemon's stop waits for that child.
  const handle = await startDaemon(argv, { label, ready: /Connected to server\./, env: cleanEnv(), afterStop: leftoverCheck(ctx, /sshuttle/) })
  if (opts.noRuleWait) return handle
  try {
    await waitFor(async () => sshuttleRedirects(await natTable(ctx), port, ctx.tb.privateNet), 10_000)
  } catch (e) {
    await handle.stop()
    throw new Error(`${label}: said "Connected to server." but redirected nothing to :${port} within 10 s (${e.message})`)
  }
  return handle
}

/** iptables-save -t nat of the client namespace. */
async function natTable(ctx) {
  return (await runToEnd(nsArgv(ctx.tb, 'client', ['iptables-save', '-t', 'nat']), { timeoutMs: 10_000 })).stdout
}

/**
 * Whether sshuttle's rules are in: its chain redirects `net` to its listener `port`. sshuttle
 * prints "Connected to server." before its firewall child applies them (client.py: the rules go
 * in once the server's route list arrives): a connection made in between leaves unredirected,
 * its SYN is lost, and conntrack keeps the retransmissions on that unredirected path — iperf3
 * then failed with "unable to connect to server: Connection timed out". The subnet's REDIRECT
 * is the last rule sshuttle adds (after the DNS ones with --dns). (Pure.)
 */
function sshuttleRedirects(natSave, port, net) {
  return (natSave || '').split('\n').some(
    (l) => l.startsWith('-A sshuttle-') && l.includes(`-d ${net} -p tcp `) && /-j REDIRECT\b/.test(l) && l.includes(`--to-ports ${port}`),
  )
}

/** Polls check() every 50 ms until it is true; throws after timeoutMs. */
async function waitFor(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out')
    await sleep(50)
  }
}

/**
 * A delay relay in the bastion namespace: ctx.relayPorts[rttMs] → sshd:22, RTT/2 each way, so
 * everything that connects through it sees the emulated RTT (the kernel here has no netem).
 */
function startRelay(ctx, rttMs) {
  const ip = ctx.tb.bastionIp
  const argv = nsArgv(ctx.tb, 'bastion', [
    process.execPath, RELAY, '--listen', `${ip}:${ctx.relayPorts[rttMs]}`, '--to', `${ip}:22`, '--delay-ms', String(rttMs / 2),
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
 * The ways the TCP suites reach tb.privateIp:port, compared in the same run: our rows
 * (opts.ours methods × ctx.engines, ours.js), then ssh -L and sshuttle. Each contender has
 * address(port) → { host, port }, where a client in the client namespace connects (ssh -L: a
 * fresh local port from ctx.ports for every start; sshuttle: its listener's port too), and
 * start(alias, port, addr?, { timed }?) → { handle, host, port }. The start-up suite calls
 * address() before its clock starts, so reading ports costs no measured time, and starts with
 * timed: its probe, not the bench polling the nat table, says when the path works.
 * opts.nofile: soft open-files limit of every contender (withNofile).
 */
function tcpContenders(ctx, opts = {}) {
  const ip = ctx.tb.privateIp
  const direct = async (port) => ({ host: ip, port })
  const ours = oursRows(opts.ours || ['nat'], ctx.engines || ['builtin']).map(({ method, engine }) => ({
    ...oursContender(method, engine), kind: 'ours',
    address: direct,
    start: async (alias, port, addr) => ({ handle: await startSubnetTunnel(ctx, alias, [], { ...opts, method, engine }), ...(addr || (await direct(port))) }),
  }))
  const forwardAddress = async () => ({ host: '127.0.0.1', port: await ctx.ports.take('client') })
  return [
    ...ours,
    {
      contender: 'ssh -L', kind: 'competitor', label: `ssh -N -L (${BENCH_CIPHER.split('@')[0]})`,
      address: forwardAddress,
      start: async (alias, port, addr) => {
        const a = addr || (await forwardAddress())
        return { handle: await startSshForward(ctx, alias, a.port, ip, port, opts), ...a }
      },
    },
    {
      contender: 'sshuttle', kind: 'competitor', label: 'sshuttle --method nat',
      // Its listener's port is taken here, so a caller that times the start takes it first.
      address: async (port) => ({ host: ip, port, listenPort: await ctx.ports.take('client') }),
      start: async (alias, port, addr, how = {}) => {
        const a = addr || { host: ip, port }
        const handle = await startSshuttle(ctx, alias, [], { ...opts, listenPort: a.listenPort, noRuleWait: how.timed })
        return { handle, host: a.host, port: a.port }
      },
    },
  ]
}

/**
 * ssh aliases of the TCP suites: OpenSSH pinned to BENCH_CIPHER (ssh -L passes -c too;
 * sshuttle's ssh reads it from here). subnet-tunnel ignores Ciphers and picks its own order,
 * which puts aes128-gcm first on a CPU with AES-NI. relayPorts: RTT → the relay's port.
 */
function tcpSshHosts(rtts, relayPorts) {
  return rtts.map((r) => ({ alias: `bench-gcm-rtt${r}`, port: r > 0 ? relayPorts[r] : 22, extra: [`Ciphers ${BENCH_CIPHER}`] }))
}

module.exports = {
  CLI_BIN, BENCH_CIPHER, startSubnetTunnel, startSshuttle, sshuttleRedirects, startRelay, startSshForward, tcpContenders, tcpSshHosts, withNofile, hardNofile,
}
