'use strict'
/**
 * Starting the things that get compared — subnet-tunnel, sshuttle (and later ssh -L) — and the
 * RTT relay they connect through. Each runs in the testbed's client namespace (the relay in the
 * bastion's), is ready when it says so, and is stopped by pid through the cleanup stack.
 */
const fs = require('node:fs')
const path = require('node:path')
const { startDaemon, runToEnd, descendantsOf } = require('./proc')
const { parseVmRss } = require('./perf-parse')
const { REPO_DIR, nsArgv } = require('./testbed')

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
 * rules left behind (chains/tables named after the tool): the next contender must start from a
 * clean namespace, and a tool that leaks rules should be seen. Leftovers are reported, not fatal.
 */
function checkRulesOnStop(ctx, handle, mark) {
  const stop = handle.stop
  handle.stop = async () => {
    await stop()
    const dumps = await Promise.all([
      runToEnd(nsArgv(ctx.tb, 'client', ['iptables-save']), { timeoutMs: 10_000 }),
      runToEnd(nsArgv(ctx.tb, 'client', ['nft', 'list', 'ruleset']), { timeoutMs: 10_000 }),
    ])
    const left = dumps.flatMap((d) => d.stdout.split('\n')).filter((l) => mark.test(l))
    if (left.length) ctx.progress(`warning: ${handle.label} left rules in the client namespace: ${left.slice(0, 3).join(' | ')}`)
  }
  return handle
}

/**
 * subnet-tunnel to the testbed's private net through ssh alias `alias` of ctx.sshConfig.
 * `--method nat`, like sshuttle's default, so both use the same kernel redirect.
 */
function startSubnetTunnel(ctx, alias, args) {
  const argv = nsArgv(ctx.tb, 'client', [
    process.execPath, CLI_BIN, '-F', ctx.sshConfig, '-r', alias, '--method', 'nat', ctx.tb.privateNet, ...args,
  ])
  // The CLI prints one line containing "up:" once SSH is up and the rules are in place.
  const label = `subnet-tunnel ${args.join(' ')}`
  return startDaemon(argv, { label, ready: /\bup:/, env: cleanEnv() }).then((h) => checkRulesOnStop(ctx, h, /subnet-tunnel/))
}

/**
 * sshuttle (1.1) through the same ssh alias. It runs ssh itself (-e) and needs python3 on the
 * server, which the bastion namespace shares with this machine. It must run inside the client
 * namespace: its firewall rules (method nat) go there, and are deleted with the namespace even
 * if it died without restoring them.
 */
function startSshuttle(ctx, alias, args) {
  const argv = nsArgv(ctx.tb, 'client', [
    'sshuttle', '-r', alias, '--method', 'nat', '-e', `ssh -F ${ctx.sshConfig}`, ctx.tb.privateNet, ...args,
  ])
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
function startSshForward(ctx, alias, localPort, host, port) {
  const argv = nsArgv(ctx.tb, 'client', [
    'ssh', '-F', ctx.sshConfig, '-N', '-c', BENCH_CIPHER, '-o', 'ExitOnForwardFailure=yes',
    '-o', 'PermitLocalCommand=yes', '-o', 'LocalCommand=echo forward-ready',
    '-L', `127.0.0.1:${localPort}:${host}:${port}`, alias,
  ])
  return startDaemon(argv, { label: `ssh -L ${localPort}:${host}:${port}`, ready: /forward-ready/, env: cleanEnv() })
}

/**
 * The three ways the TCP suites reach tb.privateIp:port, compared in the same run. start(alias,
 * port) resolves { handle, host, port }: where a client in the client namespace connects.
 * Local ports for ssh -L: 20000 + the target port (the client namespace is ours alone).
 */
function tcpContenders(ctx) {
  const ip = ctx.tb.privateIp
  return [
    {
      contender: 'subnet-tunnel', kind: 'ours', label: 'subnet-tunnel --method nat',
      start: async (alias, port) => ({ handle: await startSubnetTunnel(ctx, alias, []), host: ip, port }),
    },
    {
      contender: 'ssh -L', kind: 'competitor', label: `ssh -N -L (${BENCH_CIPHER.split('@')[0]})`,
      start: async (alias, port) => ({ handle: await startSshForward(ctx, alias, 20000 + port, ip, port), host: '127.0.0.1', port: 20000 + port }),
    },
    {
      contender: 'sshuttle', kind: 'competitor', label: 'sshuttle --method nat',
      start: async (alias, port) => ({ handle: await startSshuttle(ctx, alias, []), host: ip, port }),
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
  let total = 0
  for (const p of alone ? [pid] : [pid, ...descendantsOf(pid)]) {
    try {
      total += parseVmRss(fs.readFileSync(`/proc/${p}/status`, 'utf8')) || 0
    } catch {
      // exited meanwhile
    }
  }
  return total
}

module.exports = {
  CLI_BIN, BENCH_CIPHER, startSubnetTunnel, startSshuttle, startRelay, startSshForward, tcpContenders, tcpSshHosts, treeRss,
}
