#!/usr/bin/env node
// Opens N TCP connections at once to host:port, and only when all are established sends one
// HTTP/1.0 GET on each, so N requests are in flight through the tunnel together.
// Prints JSON: { ok, failed, errors: [first few], ms }. Exit code 0 only when all succeeded.
// usage: node concurrent-client.js HOST PORT N PATH EXPECT_SUBSTRING
'use strict'
const net = require('node:net')

const [host, portText, nText, path = '/', expect = ''] = process.argv.slice(2)
const port = Number(portText)
const n = Number(nText)
const started = Date.now()

function connect() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port })
    s.setTimeout(30000, () => s.destroy(new Error('timeout')))
    s.once('connect', () => resolve(s))
    s.once('error', reject)
  })
}

function request(s) {
  return new Promise((resolve, reject) => {
    const chunks = []
    s.on('data', (b) => chunks.push(b))
    s.once('error', reject)
    s.once('close', () => {
      const text = Buffer.concat(chunks).toString()
      if (/^HTTP\/1\.[01] 200 /.test(text) && text.includes(expect)) resolve()
      else reject(new Error(`bad response: ${JSON.stringify(text.slice(0, 80))}`))
    })
    s.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  })
}

async function main() {
  const conns = await Promise.allSettled(Array.from({ length: n }, connect))
  const results = await Promise.allSettled(
    conns.map((c) => (c.status === 'fulfilled' ? request(c.value) : Promise.reject(c.reason))),
  )
  const errors = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason && r.reason.message))
  const ok = results.length - errors.length
  process.stdout.write(JSON.stringify({ ok, failed: errors.length, errors: errors.slice(0, 5), ms: Date.now() - started }) + '\n')
  process.exit(errors.length === 0 ? 0 : 1)
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: 0, failed: n, errors: [String(e)] }) + '\n')
  process.exit(1)
})
