'use strict'
/**
 * What the bench needs on this machine, and how to get it. Each suite lists its tools; the
 * testbed's own needs (sshd, dnsmasq, iperf3…) are checked by scripts/testbed itself and
 * installed by scripts/install-test-deps.
 */
const fs = require('node:fs')
const path = require('node:path')
const { runToEnd } = require('./proc')

/** tool → Debian package. */
const PACKAGE_OF = {
  dnsperf: 'dnsperf',
  sshuttle: 'sshuttle',
  iperf3: 'iperf3',
  wrk: 'wrk',
  curl: 'curl',
  ip: 'iproute2',
  ss: 'iproute2',
  ssh: 'openssh-client',
  python3: 'python3',
  prlimit: 'util-linux',
}

function onPath(tool) {
  return (process.env.PATH || '/usr/bin:/bin')
    .split(':')
    .some((d) => {
      try {
        fs.accessSync(path.join(d, tool), fs.constants.X_OK)
        return true
      } catch {
        return false
      }
    })
}

/** The tools of `needed` that are missing, with their packages. */
function missingTools(needed) {
  return needed.filter((t) => !onPath(t)).map((tool) => ({ tool, pkg: PACKAGE_OF[tool] || tool }))
}

/** The apt-get line that installs the missing tools. */
function installHint(missing) {
  return `apt-get install -y ${[...new Set(missing.map((m) => m.pkg))].join(' ')}`
}

/** Installs the packages of the missing tools with apt-get (root); throws when it fails. */
async function installTools(missing) {
  if (missing.length === 0) return
  const pkgs = [...new Set(missing.map((m) => m.pkg))]
  process.stderr.write(`bench: installing ${pkgs.join(' ')} (apt-get)\n`)
  let r = await runToEnd(['apt-get', 'install', '-y', ...pkgs], { timeoutMs: 600_000 })
  if (r.code !== 0) {
    // A fresh container often has no package lists yet.
    await runToEnd(['apt-get', 'update'], { timeoutMs: 600_000 })
    r = await runToEnd(['apt-get', 'install', '-y', ...pkgs], { timeoutMs: 600_000 })
  }
  if (r.code !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed:\n${r.stderr.trim().slice(-2000)}`)
}

module.exports = { missingTools, installHint, installTools }
