#!/usr/bin/env node
// Opens N TCP connections at once to an echo server, checks each echoes one line, and keeps the
// ones that did open, reporting how every connection ends. For fault tests: "is an open
// connection reset promptly, or left hanging?" and "when fds run out, are the extra connections
// refused cleanly?".
//
// stdout, one JSON object per line:
//   {"ev":"settled","echoed":E,"reset":R,"eof":F,"refused":C,"timeout":T,"other":O,"errors":[...],"t":ms}
//       once every connection has echoed or ended (or SETTLE_MS passed: the rest count as timeout)
//   {"ev":"closed","i":I,"how":"reset"|"eof"|"other","code":"ECONNRESET"|…,"t":ms}
//       later, for each echoed (held) connection that the other side ends
//   {"ev":"done","open":K,"t":ms}   when HOLD_MS passed or stdin closed: the rest are closed by us
// t is epoch milliseconds.
// usage: node hold-client.js HOST PORT N SETTLE_MS HOLD_MS
'use strict'
const net = require('node:net')

const [host, portText, nText, settleText, holdText] = process.argv.slice(2)
const n = Number(nText)
const settleMs = Number(settleText)
const holdMs = Number(holdText)
const out = (o) => process.stdout.write(JSON.stringify({ ...o, t: Date.now() }) + '\n')

const conns = []
let settled = false
const counts = { echoed: 0, reset: 0, eof: 0, refused: 0, timeout: 0, other: 0 }
const errors = new Set()

function how(code) {
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset'
  if (code === 'ECONNREFUSED') return 'refused'
  if (code === undefined) return 'eof'
  return 'other'
}

function maybeSettle(force) {
  if (settled) return
  const pending = conns.filter((c) => c.state === 'pending')
  if (pending.length > 0 && !force) return
  settled = true
  counts.timeout = pending.length
  out({ ev: 'settled', ...counts, errors: [...errors].slice(0, 5) })
}

for (let i = 0; i < n; i++) {
  const c = { state: 'pending', code: undefined, sock: net.connect({ host, port: Number(portText) }) }
  conns.push(c)
  let buf = ''
  c.sock.setEncoding('utf8')
  c.sock.on('connect', () => c.sock.write(`ping ${i}\n`))
  c.sock.on('data', (d) => {
    buf += d
    if (c.state === 'pending' && buf.includes(`ping ${i}\n`)) {
      c.state = 'echoed'
      counts.echoed++
      maybeSettle(false)
    }
  })
  c.sock.on('error', (e) => {
    c.code = e.code
    errors.add(`${e.code ?? ''} ${e.message}`)
  })
  c.sock.on('close', () => {
    const kind = how(c.code)
    if (c.state === 'pending') {
      c.state = 'ended'
      counts[kind]++
      maybeSettle(false)
    } else if (c.state === 'echoed') {
      c.state = 'ended'
      if (settled) {
        out({ ev: 'closed', i, how: kind, code: c.code ?? 'EOF' })
      } else {
        // Ended before the summary: count it as what it became.
        counts.echoed--
        counts[kind]++
      }
    }
  })
}

setTimeout(() => maybeSettle(true), settleMs).unref()
const finish = () => {
  const open = conns.filter((c) => c.state === 'echoed')
  out({ ev: 'done', open: open.length })
  for (const c of conns) c.sock.destroy()
  process.exit(0)
}
setTimeout(finish, holdMs)
process.stdin.on('end', finish)
process.stdin.resume()
