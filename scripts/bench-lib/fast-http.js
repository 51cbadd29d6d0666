#!/usr/bin/env node
'use strict'
/**
 * A minimal HTTP responder for the connection-rate suite, run in the private namespace:
 * answers every request with a fixed 200 and closes. The testbed's Python server (one thread
 * per connection) tops out near 1,200 connections/s on a 2-core VM, below what the tunnels
 * do, so it would measure Python; this one does several times that.
 *
 *   node fast-http.js HOST PORT      prints "listening HOST:PORT"; PORT 0: a free port, and the
 *                                    line says which (the bench reads it back)
 */
const net = require('node:net')

const BODY = 'hello from the private network\n'
const RESPONSE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
)
const [host, port] = process.argv.slice(2)
const server = net.createServer((s) => {
  let head = ''
  s.on('error', () => s.destroy())
  s.on('data', (b) => {
    head += b
    if (head.includes('\r\n\r\n')) {
      s.end(RESPONSE)
      head = ''
    }
  })
})
server.on('error', (e) => {
  process.stderr.write(`fast-http: ${e.message}\n`)
  process.exit(1)
})
server.listen({ host, port: Number(port), backlog: 4096 }, () => process.stdout.write(`listening ${host}:${server.address().port}\n`))
