#!/usr/bin/env node
'use strict'
/**
 * A TCP relay that delays every byte by a fixed time in each direction: an RTT emulator for
 * kernels without netem (sch_netem is a module many container hosts lack). Run it in a
 * namespace in front of sshd:
 *
 *   node delay-relay.js --listen 10.250.0.1:2222 --to 10.250.0.1:22 --delay-ms 20
 *
 * Each direction adds --delay-ms (RTT/2). Order is preserved (one FIFO per direction, written
 * in arrival order), and backpressure is kept: when more than HIGH_WATER bytes wait in a
 * direction's queue, or the destination socket's buffer is full, the source is paused. That
 * bounds memory and lets TCP flow control reach the sender, as a real link with a queue would.
 * Prints "listening HOST:PORT" on stdout once it accepts connections.
 */
const net = require('node:net')

// Bytes queued per direction before the source is paused. Large enough to hold one RTT of a
// fast link (1 Gbit/s × 20 ms ≈ 2.5 MB), so the relay itself does not cap throughput.
const HIGH_WATER = 8 * 1024 * 1024
const LOW_WATER = HIGH_WATER / 2

function parseArgs(argv) {
  const out = { listen: '', to: '', delayMs: 0 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = argv[i + 1]
    if (a === '--listen') out.listen = v
    else if (a === '--to') out.to = v
    else if (a === '--delay-ms') out.delayMs = Number(v)
    else throw new Error(`unknown argument ${a}`)
    i++
  }
  if (!out.listen || !out.to || !(out.delayMs >= 0)) {
    throw new Error('usage: delay-relay --listen HOST:PORT --to HOST:PORT --delay-ms N')
  }
  return out
}

/** "host:port" or "[v6]:port" → { host, port }. */
function hostPort(s) {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s)
  if (!m) throw new Error(`bad address ${s}`)
  return { host: m[1], port: Number(m[2]) }
}

/** Moves src → dst, each chunk written delayMs after it was read. */
function delayedPipe(src, dst, delayMs, onFail) {
  const queue = [] // { due, buf } or { due, end: true }
  let head = 0
  let queued = 0
  let timer = null
  let waitingDrain = false
  let paused = false

  const maybeResume = () => {
    if (paused && queued < LOW_WATER && !waitingDrain) {
      paused = false
      src.resume()
    }
  }
  const flush = () => {
    timer = null
    const now = performance.now()
    while (head < queue.length && queue[head].due <= now) {
      const item = queue[head++]
      if (item.end) {
        dst.end()
        continue
      }
      queued -= item.buf.length
      if (!dst.write(item.buf)) {
        // Keep order: nothing more is written until the kernel buffer drains.
        waitingDrain = true
        dst.once('drain', () => {
          waitingDrain = false
          flush()
          maybeResume()
        })
        break
      }
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head)
      head = 0
    }
    maybeResume()
    schedule()
  }
  const schedule = () => {
    if (timer || waitingDrain || head >= queue.length) return
    timer = setTimeout(flush, Math.max(0, queue[head].due - performance.now()))
  }
  src.on('data', (buf) => {
    queue.push({ due: performance.now() + delayMs, buf })
    queued += buf.length
    if (queued > HIGH_WATER && !paused) {
      paused = true
      src.pause()
    }
    schedule()
  })
  src.on('end', () => {
    queue.push({ due: performance.now() + delayMs, end: true })
    schedule()
  })
  src.on('error', onFail)
}

function main() {
  const opts = parseArgs(process.argv.slice(2))
  const listen = hostPort(opts.listen)
  const to = hostPort(opts.to)
  // allowHalfOpen: a FIN is relayed (delayed, after the data before it) instead of closing at once.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port: to.port, host: to.host, allowHalfOpen: true })
    // The relay must not add Nagle delays on top of the emulated ones (ssh sets NODELAY too).
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    const fail = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    delayedPipe(client, upstream, opts.delayMs, fail)
    delayedPipe(upstream, client, opts.delayMs, fail)
  })
  server.on('error', (e) => {
    console.error(`delay-relay: ${e.message}`)
    process.exit(1)
  })
  server.listen(listen.port, listen.host, () => console.log(`listening ${opts.listen}`))
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
}

if (require.main === module) main()
module.exports = { parseArgs, hostPort }
