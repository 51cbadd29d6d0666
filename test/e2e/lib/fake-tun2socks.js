#!/usr/bin/env node
/**
 * A stand-in for xjasonlyu tun2socks in e2e tests: it speaks the same command line
 * (`-device tun://NAME -proxy socks5://[USER:PASS@]HOST:PORT [-loglevel L]`, `-version`) and does
 * the same job with our own parts — it opens the TUN device with dist/platform/os/tun-device.js and
 * runs dist/tun/builtin-engine.js with a Dialer that connects through the SOCKS5 proxy.
 *
 * Test hooks (environment): FAKE_T2S_LOG=FILE appends one line per start ("start <pid> <argv>");
 * FAKE_T2S_CRASH_AFTER_MS=N exits with code 2 after N ms on the first start only (marker file
 * FILE.crashed), to exercise the supervisor's restart.
 */
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const dist = process.env.SUBNET_TUNNEL_DIST || path.resolve(__dirname, '../../../dist')
const { SocksClient } = require('socks')

const argv = process.argv.slice(2)
if (argv.includes('-version') || argv.includes('--version')) {
  console.log('tun2socks-2.5.2\nlinux/amd64, go1.22.0, fake')
  process.exit(0)
}
const opt = (name) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const device = /^tun:\/\/([A-Za-z0-9_.-]{1,15})$/.exec(opt('-device') || '')
const proxy = /^socks5:\/\/(?:([^:@]+):([^@]+)@)?\[?([0-9a-fA-F.:]+)\]?:(\d+)$/.exec(opt('-proxy') || '')
if (!device || !proxy) {
  console.error(`fake-tun2socks: usage: -device tun://NAME -proxy socks5://[user:pass@]host:port (got ${argv.join(' ')})`)
  process.exit(1)
}
const log = process.env.FAKE_T2S_LOG
if (log) fs.appendFileSync(log, `start ${process.pid} ${argv.join(' ')}\n`)
const crashAfter = Number(process.env.FAKE_T2S_CRASH_AFTER_MS || 0)
if (crashAfter > 0 && log && !fs.existsSync(`${log}.crashed`)) {
  setTimeout(() => {
    fs.writeFileSync(`${log}.crashed`, '')
    process.exit(2)
  }, crashAfter)
}

const { openTunDevice } = require(path.join(dist, 'platform/os/tun-device.js'))
const { startBuiltinEngine } = require(path.join(dist, 'tun/builtin-engine.js'))
const { RouteTable } = require(path.join(dist, 'router/route-table.js'))
const { ConnTracker } = require(path.join(dist, 'router/conn-tracker.js'))
const { DialError } = require(path.join(dist, 'router/dial-error.js'))
const { createLogger } = require(path.join(dist, 'observe/logger.js'))
const { parseCidr } = require(path.join(dist, 'config/cidr.js'))

const [, user, pass, host, port] = proxy
/** Every connection goes through the proxy; its REP code becomes the stack's answer. */
const dialer = {
  async dial(dst) {
    try {
      const { socket } = await SocksClient.createConnection({
        proxy: { host, port: Number(port), type: 5, ...(user ? { userId: user, password: pass } : {}) },
        command: 'connect',
        destination: { host: dst.host, port: dst.port },
        timeout: 10_000,
      })
      return socket
    } catch (e) {
      throw new DialError(/refused/i.test(e.message) ? 'refused' : 'unreachable', e.message)
    }
  },
}

openTunDevice(device[1]).then((dev) => {
  const engine = startBuiltinEngine({
    device: dev,
    dialer,
    // tun2socks sends whatever the routes give it to the proxy.
    routes: new RouteTable([parseCidr('0/0'), parseCidr('::/0')].map((cidr) => ({ cidr, action: 'tunnel' }))),
    tracker: new ConnTracker(),
    log: createLogger({ level: opt('-loglevel') === 'debug' ? 'debug' : 'warn' }),
  })
  const stop = () => engine.stop().then(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}, (e) => {
  console.error(`fake-tun2socks: ${e.message}`)
  process.exit(1)
})
