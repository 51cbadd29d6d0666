#!/usr/bin/env node
'use strict'
/**
 * A small TCP client the bench runs inside the client namespace (where the tunnels redirect),
 * and the echo server it runs in the private one.
 *
 *   node net-client.js first-ok HOST PORT        GET / every 10 ms until one answers 200;
 *                                                 prints "probing" at start, then "ok <epoch ms>"
 *   node net-client.js hold HOST PORT COUNT      opens COUNT connections to an echo server,
 *                                                 each sends a line and waits for it back;
 *                                                 prints "held ok=N failed=M", then keeps them
 *                                                 open until SIGTERM
 *   node net-client.js echo HOST PORT            an echo server (the memory suite's target):
 *                                                 prints "listening HOST:PORT" (PORT 0: the
 *                                                 port it got); one thread for
 *                                                 all connections, so 10,000 idle ones cost
 *                                                 it little (the testbed's Python echo server
 *                                                 spends a thread on each)
 *
 * Why not curl in a loop for first-ok: each curl costs a fork+exec (several ms) through
 * `ip netns exec`, which would blur a figure measured in tens of milliseconds.
 */
const net = require('node:net')

function firstOk(host, port) {
  // A new attempt every 10 ms, whatever earlier ones are doing: a SYN sent before the redirect
  // exists is not refused but silently lost (the bastion does not route the private net), and
  // its retransmission would wait a whole second; serial retries would then measure the
  // kernel's SYN timer, the same ~1.0 s for every contender, not when the tunnel works.
  let pending = 0
  const attempt = () => {
    if (pending >= 200) return
    pending++
    const s = net.connect({ host, port })
    let buf = ''
    let done = false
    const finish = () => {
      if (done) return
      done = true
      pending--
      s.destroy()
    }
    s.setTimeout(5000, finish)
    s.on('error', finish)
    s.on('close', finish)
    s.on('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    s.on('data', (b) => {
      buf += b
      if (/^HTTP\/1\.[01] 200/.test(buf)) {
        process.stdout.write(`ok ${Date.now()}\n`)
        process.exit(0)
      }
    })
  }
  process.stdout.write('probing\n')
  attempt()
  setInterval(attempt, 10)
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

function echo(host, port) {
  const server = net.createServer((s) => {
    s.on('error', () => s.destroy())
    s.pipe(s)
  })
  server.on('error', (e) => {
    process.stderr.write(`echo: ${e.message}\n`)
    process.exit(1)
  })
  // A long accept queue: 10,000 connections arrive in bursts of 50 (see hold).
  server.listen({ host, port, backlog: 4096 }, () => process.stdout.write(`listening ${host}:${server.address().port}\n`))
  process.on('SIGTERM', () => process.exit(0))
}

const [mode, host, port, count] = process.argv.slice(2)
if (mode === 'first-ok') firstOk(host, Number(port))
else if (mode === 'hold') hold(host, Number(port), Number(count))
else if (mode === 'echo') echo(host, Number(port))
else {
  process.stderr.write('usage: net-client.js first-ok HOST PORT | hold HOST PORT COUNT | echo HOST PORT\n')
  process.exit(2)
}
