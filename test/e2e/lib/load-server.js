#!/usr/bin/env node
// The load tests' target, run in the private namespace: one single-threaded process (the
// testbed's Python server spends a thread per connection and tops out near 1,200 connections/s
// on 2 cores, so it would measure Python, not the tunnel) serving four ports from BASE:
//
//   BASE     echo: every byte back (10,000 idle connections cost it ~10,000 fds, nothing else)
//   BASE+1   http: any request gets a fixed 200 with Connection: close, then FIN
//   BASE+2   source: reads one line "N\n", then sends N random bytes as fast as the socket
//            takes them (honouring backpressure) and ends; prints {"ev":"sent","bytes","sha256"}
//   BASE+3   sink: reads one line "N\n", then stops reading until stdin says "resume"; then
//            reads N bytes, answers "<sha256> <N>\n" and ends; prints {"ev":"received",...}
//
// stdout: {"ev":"listening"} once all four listen, then the events above (JSON lines).
// usage: node load-server.js HOST BASE
'use strict'
const net = require('node:net')
const { createHash } = require('node:crypto')
const { sendRandom } = require('./random-source')

const [host, baseText] = process.argv.slice(2)
const base = Number(baseText)
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const BODY = 'hello from the load server\n'
const RESPONSE = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`)

/** Calls fn(n, rest) once the first line ("N\n") has arrived; rest is what followed it. */
function onHeader(s, fn) {
  let head = Buffer.alloc(0)
  const onData = (b) => {
    head = Buffer.concat([head, b])
    const nl = head.indexOf(10)
    if (nl < 0) return
    s.off('data', onData)
    fn(Number(head.subarray(0, nl).toString()), head.subarray(nl + 1))
  }
  s.on('data', onData)
}

const echo = (s) => {
  s.on('error', () => s.destroy())
  s.pipe(s)
}

const http = (s) => {
  let head = ''
  s.on('error', () => s.destroy())
  s.on('data', (b) => {
    head += b
    if (head.includes('\r\n\r\n')) {
      head = ''
      s.end(RESPONSE)
    }
  })
}

const source = (s) => {
  s.on('error', (e) => out({ ev: 'error', port: 'source', message: e.message }))
  onHeader(s, (n) => {
    sendRandom(s, n, (hash) => {
      out({ ev: 'sent', bytes: n, sha256: hash.digest('hex') })
      s.end()
    })
  })
}

const paused = new Set()
const sink = (s) => {
  s.on('error', (e) => out({ ev: 'error', port: 'sink', message: e.message }))
  onHeader(s, (n, rest) => {
    // Never read: what the client sends piles up in the kernel, then upstream of it.
    s.pause()
    const hash = createHash('sha256').update(rest)
    let got = rest.length
    paused.add(() => {
      s.on('data', (b) => {
        hash.update(b)
        got += b.length
        if (got >= n) {
          const sha256 = hash.digest('hex')
          out({ ev: 'received', bytes: got, sha256 })
          s.end(`${sha256} ${got}\n`)
        }
      })
      s.resume()
    })
    out({ ev: 'sink-paused' })
  })
}

let listening = 0
for (const [offset, handler] of [[0, echo], [1, http], [2, source], [3, sink]]) {
  const server = net.createServer(handler)
  server.on('error', (e) => {
    process.stderr.write(`load-server :${base + offset}: ${e.message}\n`)
    process.exit(1)
  })
  // A long accept queue: thousands of connections arrive in bursts.
  server.listen({ host, port: base + offset, backlog: 8192 }, () => {
    if (++listening === 4) out({ ev: 'listening' })
  })
}

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (d) => {
  input += d
  if (input.includes('resume')) {
    input = ''
    for (const f of paused) f()
    paused.clear()
  }
})
process.stdin.on('end', () => process.exit(0))
