#!/usr/bin/env node
'use strict'
/**
 * A small TCP client the bench runs inside the client namespace (where the tunnels redirect).
 *
 *   node net-client.js first-ok HOST PORT        GET / every 10 ms until one answers 200;
 *                                                 prints "probing" at start, then "ok <epoch ms>"
 *   node net-client.js hold HOST PORT COUNT      opens COUNT connections to an echo server,
 *                                                 each sends a line and waits for it back;
 *                                                 prints "held ok=N failed=M", then keeps them
 *                                                 open until SIGTERM
 *
 * Why not curl in a loop for first-ok: each curl costs a fork+exec (several ms) through
 * `ip netns exec`, which would blur a figure measured in tens of milliseconds.
 */
const net = require('node:net')

function firstOk(host, port) {
  const attempt = () => {
    const s = net.connect({ host, port })
    let buf = ''
    const retry = () => {
      s.destroy()
      setTimeout(attempt, 10)
    }
    s.setTimeout(1000, retry)
    s.on('error', retry)
    s.on('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    s.on('data', (b) => {
      buf += b
      if (/^HTTP\/1\.[01] 200/.test(buf)) {
        process.stdout.write(`ok ${Date.now()}\n`)
        process.exit(0)
      }
    })
    s.on('end', retry)
  }
  process.stdout.write('probing\n')
  attempt()
}

function hold(host, port, count) {
  let ok = 0
  let failed = 0
  const sockets = []
  const done = () => {
    if (ok + failed !== count) return
    process.stdout.write(`held ok=${ok} failed=${failed}\n`)
  }
  // Opened in batches: 1,000 SYNs at once would measure listen backlogs, not the tunnel.
  let started = 0
  const openBatch = () => {
    for (let i = 0; i < 50 && started < count; i++, started++) {
      const s = net.connect({ host, port })
      sockets.push(s)
      let settled = false
      const settle = (good) => {
        if (settled) return
        settled = true
        if (good) ok++
        else failed++
        done()
      }
      s.setTimeout(20_000, () => settle(false))
      s.on('error', () => settle(false))
      s.on('close', () => settle(false))
      s.on('connect', () => s.write('ping\n'))
      s.on('data', (b) => {
        if (b.toString().includes('ping')) {
          s.setTimeout(0)
          settle(true)
        }
      })
    }
    if (started < count) setTimeout(openBatch, 20)
  }
  openBatch()
  const quit = () => {
    for (const s of sockets) s.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', quit)
}

const [mode, host, port, count] = process.argv.slice(2)
if (mode === 'first-ok') firstOk(host, Number(port))
else if (mode === 'hold') hold(host, Number(port), Number(count))
else {
  process.stderr.write('usage: net-client.js first-ok HOST PORT | hold HOST PORT COUNT\n')
  process.exit(2)
}
