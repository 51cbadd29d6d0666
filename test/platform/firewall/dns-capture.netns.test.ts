/**
 * Root-only: DNS capture with the real helper and real iptables/nft, inside throwaway network
 * namespaces. `client` is where the rules and our stand-in interceptor live; `remote` (joined by
 * a veth pair) holds a real nameserver at 10.98.0.53 / fd98::53, so an exempt query has
 * something real to reach. Answers tell who replied: the interceptor answers 192.0.2.4 on its
 * IPv4 socket and 192.0.2.6 on its IPv6 one, the real server 198.51.100.53. dig itself checks
 * that a UDP reply comes from the address and port it asked (else "reply from unexpected
 * source" and a timeout), which is what conntrack's de-NAT must get right.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { memoryLogger } from '../../../src/observe/logger'
import { startHelper, type HelperClient } from '../../../src/platform/helper/helper-client'
import type { CaptureSpec, MethodName } from '../../../src/platform/firewall/types'
import { canUseNetns, compilePlatform, Netns, nodeEnv, tempDir, waitFor } from '../netns-harness'

const enabled = canUseNetns()

/** A tiny DNS responder (UDP + TCP): one A record per listener; logs each query as a JSON line. */
const RESPONDER = `
const dgram = require('dgram'), net = require('net')
const [port, ...binds] = process.argv.slice(2)
function answer(q, ip) {
  let o = 12
  while (q[o] !== 0) o += q[o] + 1
  o += 5
  const h = Buffer.from(q.subarray(0, 12))
  h.writeUInt16BE(0x8180 | (q.readUInt16BE(2) & 0x0100), 2)
  h.writeUInt16BE(1, 4); h.writeUInt16BE(1, 6); h.writeUInt16BE(0, 8); h.writeUInt16BE(0, 10)
  const a = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ip.split('.').map(Number)])
  return Buffer.concat([h, q.subarray(12, o), a])
}
const log = (o) => process.stdout.write(JSON.stringify(o) + '\\n')
let pending = binds.length * 2
const ready = () => { if (--pending === 0) log({ ready: true }) }
for (const b of binds) {
  const [addr, ip] = b.split('=')
  const u = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4')
  u.on('message', (m, r) => {
    log({ proto: 'udp', on: addr, from: r.address })
    u.send(answer(m, ip), r.port, r.address)
  })
  u.bind(Number(port), addr, ready)
  net.createServer((s) => {
    log({ proto: 'tcp', on: addr, from: s.remoteAddress })
    let buf = Buffer.alloc(0)
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0))
        buf = buf.subarray(2 + q.length)
        const r = answer(q, ip)
        s.write(Buffer.concat([Buffer.from([r.length >> 8, r.length & 255]), r]))
      }
    })
    s.on('error', () => {})
  }).listen(Number(port), addr, ready)
}
`

/** Asks with UDP and prints the sender of the reply, for an explicit check beyond dig's own. */
const UDP_CLIENT = `
const dgram = require('dgram')
const [host, localPort] = process.argv.slice(2)
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4')
// id 0xabcd, RD, one question: example.test A IN
const q = Buffer.from('abcd' + '0100' + '0001' + '0000'.repeat(3) + '076578616d706c65' + '0474657374' + '00' + '0001' + '0001', 'hex')
s.on('message', (m, r) => { console.log(JSON.stringify({ address: r.address, port: r.port, id: m.readUInt16BE(0) })); process.exit(0) })
s.bind(Number(localPort) || 0, () => s.send(q, 53, host))
setTimeout(() => { console.log('{"timeout":true}'); process.exit(1) }, 3000)
`

interface QueryLog { proto: 'udp' | 'tcp'; on: string; from: string }

describe.skipIf(!enabled)('DNS capture in a network namespace', () => {
  let client: Netns
  let remote: Netns
  let work: string
  let platformDir: string
  const procs: ChildProcess[] = []
  const seen: QueryLog[] = []
  const PORT = 20000 + Math.floor(Math.random() * 20000)

  /** Starts the responder in a namespace and waits for it to be bound. */
  async function responder(ns: Netns, port: number, binds: string[], into?: QueryLog[]): Promise<void> {
    const p = spawn('ip', ['netns', 'exec', ns.name, process.execPath, path.join(work, 'responder.js'), String(port), ...binds],
      { stdio: ['ignore', 'pipe', 'inherit'] })
    procs.push(p)
    let buf = ''
    let ready = false
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop()!
      for (const l of lines) {
        const o = JSON.parse(l) as QueryLog & { ready?: boolean }
        if (o.ready) ready = true
        else into?.push(o)
      }
    })
    if (!(await waitFor(() => ready, 5000))) throw new Error(`responder in ${ns.name} did not start`)
  }

  beforeAll(async () => {
    work = tempDir('st-dns-')
    fs.writeFileSync(path.join(work, 'responder.js'), RESPONDER)
    fs.writeFileSync(path.join(work, 'udp-client.js'), UDP_CLIENT)
    platformDir = compilePlatform(path.join(work, 'build'))
    client = new Netns()
    remote = new Netns()
    client.sh('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1')
    client.sh('ip', 'link', 'set', 'd1', 'netns', remote.name)
    client.sh('ip', 'link', 'set', 'd0', 'up')
    client.sh('ip', 'addr', 'add', '10.98.0.1/24', 'dev', 'd0')
    client.sh('ip', '-6', 'addr', 'add', 'fd98::1/64', 'dev', 'd0', 'nodad')
    remote.sh('ip', 'link', 'set', 'd1', 'up')
    remote.sh('ip', 'addr', 'add', '10.98.0.53/24', 'dev', 'd1')
    remote.sh('ip', '-6', 'addr', 'add', 'fd98::53/64', 'dev', 'd1', 'nodad')
    // the real nameserver, and our stand-in for the DNS interceptor
    await responder(remote, 53, ['10.98.0.53=198.51.100.53', 'fd98::53=198.51.100.53'])
    await responder(client, PORT, ['127.0.0.1=192.0.2.4', '::1=192.0.2.6'], seen)
  }, 120_000)

  afterAll(() => {
    try {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null && p.pid) process.kill(p.pid, 'SIGKILL')
    } finally {
      client?.destroy()
      remote?.destroy()
      if (work) fs.rmSync(work, { recursive: true, force: true })
    }
  })

  async function helper(): Promise<HelperClient> {
    return startHelper({
      log: memoryLogger(),
      env: nodeEnv(path.join(work, 'state')),
      launch: { command: 'ip', args: ['netns', 'exec', client.name, process.execPath, path.join(platformDir, 'helper/helper-main.js')], viaSudo: false, interactive: false },
    })
  }

  /** `dig +short` in the client namespace: the answered address, or '' on timeout. */
  function dig(...args: string[]): string {
    try {
      return client.sh('dig', '+short', '+tries=1', '+time=2', ...args, 'example.test', 'A').trim()
    } catch (e) {
      return `error: ${(e as { stdout?: string }).stdout ?? String(e)}`
    }
  }

  const spec = (id: string): CaptureSpec => ({
    instanceId: id,
    listenPort: 4000,
    include: [parseCidr('10.99.0.0/24')],
    exclude: [],
    dns: { servers: ['10.98.0.53', '127.0.0.53', 'fd98::53'], port: PORT, exemptSourcePorts: [40001, 40002] },
  })

  it('without rules, dig reaches the real server, and nothing answers at 127.0.0.53', () => {
    expect(dig('@10.98.0.53')).toBe('198.51.100.53')
    expect(dig('@fd98::53')).toBe('198.51.100.53')
    expect(dig('@127.0.0.53')).toMatch(/error|timed out|refused/)
  })

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: UDP and TCP to the nameservers (v4, v6, loopback stub) reach the interceptor; exempt ports do not`, async () => {
      const h = await helper()
      try {
        expect(await h.apply(method, spec(`dns${method}`))).toMatchObject({ families: [4, 6] })
        seen.length = 0

        // (a) UDP to a remote nameserver → the interceptor on 127.0.0.1, reply from 10.98.0.53:53
        expect(dig('@10.98.0.53')).toBe('192.0.2.4')
        const udp = JSON.parse(client.sh(process.execPath, path.join(work, 'udp-client.js'), '10.98.0.53')) as object
        expect(udp).toEqual({ address: '10.98.0.53', port: 53, id: 0xabcd })
        // (b) TCP too
        expect(dig('+tcp', '@10.98.0.53')).toBe('192.0.2.4')
        // (d) the loopback stub address, UDP and TCP
        expect(dig('@127.0.0.53')).toBe('192.0.2.4')
        expect(dig('+tcp', '@127.0.0.53')).toBe('192.0.2.4')
        // (e) IPv6: redirected to ::1, reply from [fd98::53]:53
        expect(dig('@fd98::53')).toBe('192.0.2.6')
        expect(dig('+tcp', '@fd98::53')).toBe('192.0.2.6')
        const udp6 = JSON.parse(client.sh(process.execPath, path.join(work, 'udp-client.js'), 'fd98::53')) as object
        expect(udp6).toEqual({ address: 'fd98::53', port: 53, id: 0xabcd })

        await waitFor(() => seen.length >= 8, 2000)
        expect(seen).toEqual([
          { proto: 'udp', on: '127.0.0.1', from: '10.98.0.1' },
          { proto: 'udp', on: '127.0.0.1', from: '10.98.0.1' },
          { proto: 'tcp', on: '127.0.0.1', from: '10.98.0.1' },
          { proto: 'udp', on: '127.0.0.1', from: '127.0.0.1' },
          { proto: 'tcp', on: '127.0.0.1', from: '127.0.0.1' },
          { proto: 'udp', on: '::1', from: 'fd98::1' },
          { proto: 'tcp', on: '::1', from: 'fd98::1' },
          { proto: 'udp', on: '::1', from: 'fd98::1' },
        ])

        // (c) from an exempt source port, the same queries go to the real server untouched
        seen.length = 0
        expect(dig('-b', '10.98.0.1#40001', '@10.98.0.53')).toBe('198.51.100.53')
        expect(dig('+tcp', '-b', '10.98.0.1#40002', '@10.98.0.53')).toBe('198.51.100.53')
        expect(dig('-b', 'fd98::1#40001', '@fd98::53')).toBe('198.51.100.53')
        const ex = JSON.parse(client.sh(process.execPath, path.join(work, 'udp-client.js'), '10.98.0.53', '40002')) as object
        expect(ex).toEqual({ address: '10.98.0.53', port: 53, id: 0xabcd })
        // a non-exempt source port right next to them is still captured
        expect(dig('-b', '10.98.0.1#40003', '@10.98.0.53')).toBe('192.0.2.4')
        await waitFor(() => seen.length >= 1, 2000)
        expect(seen).toEqual([{ proto: 'udp', on: '127.0.0.1', from: '10.98.0.1' }])
      } finally {
        // (f) closing stdin reverts everything: the real server answers again
        await h.close()
      }
      expect(client.rules()).not.toContain('subnet-tunnel-')
      expect(client.rules()).not.toMatch(/dport 53|--dport 53/)
      expect(dig('@10.98.0.53')).toBe('198.51.100.53')
      expect(dig('+tcp', '@fd98::53')).toBe('198.51.100.53')
      expect(dig('@127.0.0.53')).toMatch(/error|timed out|refused/)
    }, 60_000)
  }
})
