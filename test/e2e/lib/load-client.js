#!/usr/bin/env node
// The load tests' clients, run in the client namespace (where the tunnel redirects). One JSON
// object per line on stdout.
//
//   rate HOST PORT RATE SECONDS MAXCONC
//       a new connection every 1/RATE s for SECONDS, each one HTTP GET with Connection: close
//       that must answer 200; at most MAXCONC in flight (a launch due while at the cap is
//       counted as `capped`, not queued, so the achieved rate is measured, not hidden).
//       → {"ev":"rate","ok","errors":{code:count},"samples":[...],"capped","achievedPerS","p50Ms","p99Ms","maxInflight","ms"}
//   hold HOST PORT N INFLIGHT
//       opens N connections to an echo server, at most INFLIGHT not yet echoed at a time; each
//       sends one line and waits for it back; keeps them open.
//       → {"ev":"held","ok","errors":{...},"samples","ms"}; then, when stdin says "close", ends
//       all of them and → {"ev":"closed","cleanEof","other","ms"} once every one is gone
//   read HOST PORT N PAUSE_AFTER
//       asks a source for N bytes ("N\n"), stops reading after PAUSE_AFTER bytes
//       → {"ev":"paused","bytes"}; stdin "resume" reads on → {"ev":"done","bytes","sha256"}
//   write HOST PORT N
//       sends "N\n" and N random bytes to a sink as fast as the socket takes them (honouring
//       backpressure: a client that does not would buffer in itself, not in the tunnel)
//       → {"ev":"done","bytes","sha256","reply"} (reply: the sink's "<sha256> <bytes>")
'use strict'
const net = require('node:net')
const { createHash } = require('node:crypto')
const { sendRandom } = require('./random-source')

const [mode, host, portText, ...rest] = process.argv.slice(2)
const port = Number(portText)
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const started = Date.now()

/** Counts an error by code; keeps the first few messages. */
function errorBook() {
  const counts = {}
  const samples = []
  return {
    counts,
    samples,
    add(code, message) {
      counts[code] = (counts[code] ?? 0) + 1
      if (samples.length < 5) samples.push(`${code}: ${message}`)
    },
  }
}

function rate(perS, seconds, maxConc) {
  const errors = errorBook()
  const lat = []
  let ok = 0
  let launched = 0
  let capped = 0
  let inflight = 0
  let maxInflight = 0
  let stopped = false
  const one = () => {
    const t0 = performance.now()
    inflight++
    maxInflight = Math.max(maxInflight, inflight)
    const s = net.connect({ host, port })
    let buf = ''
    let done = false
    const finish = (code, message) => {
      if (done) return
      done = true
      inflight--
      s.destroy()
      if (code) errors.add(code, message)
      else {
        ok++
        lat.push(performance.now() - t0)
      }
      if (stopped && inflight === 0) report()
    }
    s.setTimeout(15_000, () => finish('TIMEOUT', 'no complete answer within 15 s'))
    s.setEncoding('latin1')
    s.on('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    s.on('data', (d) => (buf += d))
    s.on('error', (e) => finish(e.code ?? 'ERROR', e.message))
    s.on('end', () => {
      if (/^HTTP\/1\.1 200 /.test(buf) && buf.endsWith('hello from the load server\n')) finish()
      else finish('BAD_RESPONSE', JSON.stringify(buf.slice(0, 80)))
    })
    s.on('close', () => finish('CLOSED', 'closed before the end of the answer'))
  }
  const report = () => {
    const ms = Date.now() - started
    lat.sort((a, b) => a - b)
    const q = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 10) / 10 : null)
    out({ ev: 'rate', ok, launched, capped, errors: errors.counts, samples: errors.samples, achievedPerS: Math.round((launched / seconds) * 10) / 10, p50Ms: q(0.5), p99Ms: q(0.99), maxInflight, ms })
    process.exit(0)
  }
  // Paced by the clock, not by a fixed interval: a late tick launches what is due.
  const timer = setInterval(() => {
    const elapsed = Math.min(seconds * 1000, Date.now() - started)
    const due = Math.floor((elapsed / 1000) * perS)
    while (launched + capped < due) {
      if (inflight >= maxConc) capped++
      else {
        launched++
        one()
      }
    }
    if (elapsed >= seconds * 1000) {
      clearInterval(timer)
      stopped = true
      if (inflight === 0) report()
    }
  }, 2)
}

function hold(n, maxInflight) {
  const errors = errorBook()
  const socks = []
  let ok = 0
  let started = 0
  let pending = 0
  let settled = 0
  let heldReported = false
  const next = () => {
    while (pending < maxInflight && started < n) open(started++)
    if (settled === n && !heldReported) {
      heldReported = true
      out({ ev: 'held', ok, errors: errors.counts, samples: errors.samples, ms: Date.now() - started0 })
    }
  }
  const started0 = Date.now()
  const open = (i) => {
    pending++
    const s = net.connect({ host, port })
    const c = { s, state: 'pending', eof: false }
    socks.push(c)
    let buf = ''
    const settle = (code, message) => {
      if (c.state !== 'pending') return
      c.state = code ? 'failed' : 'held'
      pending--
      settled++
      if (code) errors.add(code, message)
      else ok++
      setImmediate(next)
    }
    s.setEncoding('latin1')
    s.setTimeout(30_000, () => settle('TIMEOUT', 'no echo within 30 s'))
    s.on('connect', () => s.write(`ping ${i}\n`))
    s.on('data', (d) => {
      buf += d
      if (buf.includes(`ping ${i}\n`)) {
        s.setTimeout(0)
        settle()
      }
    })
    s.on('error', (e) => settle(e.code ?? 'ERROR', e.message))
    s.on('end', () => {
      c.eof = true
      settle('EOF', 'ended before the echo')
    })
    s.on('close', () => settle('CLOSED', 'closed before the echo'))
  }
  next()
  let input = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (d) => {
    input += d
    if (!input.includes('close')) return
    input = ''
    // A clean close: FIN from us, the echo server's FIN back through the tunnel.
    const t0 = Date.now()
    const live = socks.filter((c) => c.state === 'held')
    let left = live.length
    let cleanEof = 0
    let other = 0
    const done = () => {
      out({ ev: 'closed', cleanEof, other, ms: Date.now() - t0 })
      process.exit(0)
    }
    if (left === 0) done()
    for (const c of live) {
      c.s.on('error', () => {})
      c.s.on('end', () => (c.eof = true))
      c.s.once('close', (hadError) => {
        if (c.eof && !hadError) cleanEof++
        else other++
        if (--left === 0) done()
      })
      c.s.end()
    }
  })
}

function read(n, pauseAfter) {
  const s = net.connect({ host, port })
  const hash = createHash('sha256')
  let bytes = 0
  let paused = false
  s.on('connect', () => s.write(`${n}\n`))
  s.on('data', (b) => {
    hash.update(b)
    bytes += b.length
    if (!paused && bytes >= pauseAfter) {
      paused = true
      // Stop reading entirely: the kernel's receive buffer fills, then everything upstream.
      s.pause()
      out({ ev: 'paused', bytes })
    }
  })
  s.on('error', (e) => out({ ev: 'error', message: e.message }))
  s.on('end', () => {
    out({ ev: 'done', bytes, sha256: hash.digest('hex'), ms: Date.now() - started })
    process.exit(0)
  })
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (d) => {
    if (d.includes('resume')) s.resume()
  })
}

function write(n) {
  const s = net.connect({ host, port })
  let sending
  let reply = ''
  s.on('connect', () => {
    s.write(`${n}\n`)
    sending = sendRandom(s, n, () => out({ ev: 'written', bytes: n }))
  })
  s.setEncoding('latin1')
  s.on('data', (d) => (reply += d))
  s.on('error', (e) => out({ ev: 'error', message: e.message }))
  s.on('end', () => {
    out({ ev: 'done', bytes: sending ? sending.sent() : 0, sha256: (sending ? sending.hash : createHash('sha256')).digest('hex'), reply: reply.trim(), ms: Date.now() - started })
    process.exit(0)
  })
}

const num = rest.map(Number)
if (mode === 'rate') rate(num[0], num[1], num[2])
else if (mode === 'hold') hold(num[0], num[1])
else if (mode === 'read') read(num[0], num[1])
else if (mode === 'write') write(num[0])
else {
  process.stderr.write('usage: load-client.js rate|hold|read|write HOST PORT ...\n')
  process.exit(2)
}
