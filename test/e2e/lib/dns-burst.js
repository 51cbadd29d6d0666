#!/usr/bin/env node
// Sends N DNS queries at once to SERVER:53 and checks every answer against its own question:
// over UDP from N sockets, and over ONE TCP connection with all N length-prefixed queries in a
// single write (coalesced frames, pipelined as RFC 7766 allows). A forwarder that mixes up IDs or
// answers hands the wrong answer to a client, which shows up here as a mismatch.
// CASES is JSON: [{ name, type, rcode, data? }, …]; "%d" in a name becomes the query's index,
// so those queries are all distinct (no cache hit). Queries cycle through the cases.
// Prints JSON: { ok, failed, errors: [first few], ms }. Exit code 0 only when all succeeded.
// BASE_PORT: the UDP sockets bind source ports BASE_PORT+i (default: ephemeral). Ports below
// the ephemeral range never collide with an earlier client's 5-tuple, whose conntrack entry
// (still alive for 30 s or more) would keep the NAT decision of an earlier capture.
// usage: node dns-burst.js SERVER N CASES [udp|tcp|both] [BASE_PORT]
'use strict'
const dgram = require('node:dgram')
const net = require('node:net')
const packet = require('dns-packet')

const [server, nText, casesText, mode = 'both', basePortText = '0'] = process.argv.slice(2)
const basePort = Number(basePortText)
const n = Number(nText)
const cases = JSON.parse(casesText)
const family = net.isIPv6(server) ? 'udp6' : 'udp4'
const TIMEOUT_MS = 10000

function question(i) {
  const c = cases[i % cases.length]
  return { ...c, name: c.name.replace('%d', String(i)) }
}

function encode(i, id) {
  const q = question(i)
  return packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: q.type, name: q.name }] })
}

/** Why the answer does not fit question i sent with id, or undefined when it does. */
function check(i, id, buf) {
  const q = question(i)
  let a
  try {
    a = packet.decode(buf)
  } catch (e) {
    return `#${i} ${q.name}: undecodable answer (${e.message})`
  }
  if (a.id !== id) return `#${i} ${q.name}: id ${a.id}, sent ${id}`
  const aq = a.questions[0]
  if (!aq || aq.name.toLowerCase() !== q.name.toLowerCase() || aq.type !== q.type) {
    return `#${i} ${q.name} ${q.type}: answer is for ${aq ? `${aq.name} ${aq.type}` : 'no question'}`
  }
  if (a.rcode !== q.rcode) return `#${i} ${q.name} ${q.type}: rcode ${a.rcode}, want ${q.rcode}`
  if (q.data !== undefined && !a.answers.some((r) => r.type === q.type && r.data === q.data)) {
    return `#${i} ${q.name} ${q.type}: no ${q.data} in ${JSON.stringify(a.answers.map((r) => r.data))}`
  }
  return undefined
}

function udpOne(i) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(family)
    const id = (i * 7919 + 1) & 0xffff
    const timer = setTimeout(() => done(`#${i} ${question(i).name}: no UDP answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS)
    const done = (err) => {
      clearTimeout(timer)
      s.close()
      resolve(err)
    }
    s.on('error', (e) => done(`#${i}: ${e.message}`))
    s.on('message', (buf) => done(check(i, id, buf)))
    const go = () => s.send(encode(i, id), 53, server)
    if (basePort > 0) s.bind(basePort + i, go)
    else go()
  })
}

function tcpAll() {
  return new Promise((resolve) => {
    const pending = new Map()
    const errors = []
    const frames = []
    for (let i = 0; i < n; i++) {
      const id = (i * 104729 + 3) & 0xffff
      pending.set(id, i)
      const q = encode(i, id)
      const len = Buffer.alloc(2)
      len.writeUInt16BE(q.length)
      frames.push(len, q)
    }
    const s = net.connect({ host: server, port: 53 })
    let buf = Buffer.alloc(0)
    const finish = () => {
      clearTimeout(timer)
      s.destroy()
      for (const i of pending.values()) errors.push(`#${i} ${question(i).name}: no TCP answer`)
      resolve(errors)
    }
    const timer = setTimeout(finish, TIMEOUT_MS)
    s.on('error', (e) => {
      errors.push(`tcp: ${e.message}`)
      finish()
    })
    s.on('close', finish)
    s.on('connect', () => s.write(Buffer.concat(frames)))
    s.on('data', (b) => {
      buf = Buffer.concat([buf, b])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0))
        buf = buf.subarray(2 + msg.length)
        const id = msg.readUInt16BE(0)
        const i = pending.get(id)
        if (i === undefined) {
          errors.push(`tcp: unexpected answer id ${id}`)
          continue
        }
        pending.delete(id)
        const err = check(i, id, msg)
        if (err) errors.push(`tcp ${err}`)
      }
      if (pending.size === 0) finish()
    })
  })
}

async function main() {
  const started = Date.now()
  const errors = []
  let total = 0
  if (mode === 'udp' || mode === 'both') {
    const results = await Promise.all(Array.from({ length: n }, (_, i) => udpOne(i)))
    total += n
    for (const e of results) if (e) errors.push(`udp ${e}`)
  }
  if (mode === 'tcp' || mode === 'both') {
    total += n
    errors.push(...(await tcpAll()))
  }
  const failed = Math.min(errors.length, total)
  process.stdout.write(JSON.stringify({ ok: total - failed, failed, errors: errors.slice(0, 5), ms: Date.now() - started }) + '\n')
  process.exitCode = failed === 0 ? 0 : 1
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: 0, failed: n, errors: [String(e)], ms: 0 }) + '\n')
  process.exitCode = 1
})
