/**
 * Root-only: gateway mode with the real helper and real iptables/nft, in throwaway network
 * namespaces. `host` has a Linux bridge br0 (10.88.0.1/24, fd88::1/64) and runs the helper and a
 * stand-in transparent listener bound to 0.0.0.0 / :: (as the CLI must in gateway mode), with
 * the DNS interceptor's layout: UDP on 127.0.0.1 / ::1 (the host's own queries) and on 0.0.0.0 /
 * :: on a second port (forwarded clients' queries);
 * `container` hangs off the bridge by a veth pair, with its default routes via the host — the
 * Docker layout. The host has NO route to the captured networks: in PREROUTING the redirect
 * happens before the routing decision, so none is needed (unlike in OUTPUT).
 *
 * The listener answers every TCP connection with `orig=<addr>:<port>` (SO_ORIGINAL_DST) or
 * `orig=none` when the connection was not redirected, and every UDP datagram with `dns=<port>`,
 * the port it arrived on.
 *
 * A second neighbour, `lan` (10.99.0.2 behind the host's vl0), stands for the LAN next to the
 * container bridge: a gateway scoped to br0 (or to the bridge's sources) must not serve it, and
 * nobody may query the DNS port directly. --owner-only is checked on the host itself, with a
 * client running as a uid that has no account (setpriv): nothing to create or remove.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseCidr } from '../../../src/config/cidr'
import { memoryLogger } from '../../../src/observe/logger'
import { startHelper, type HelperClient } from '../../../src/platform/helper/helper-client'
import type { CaptureSpec, MethodName } from '../../../src/platform/firewall/types'
import { canUseNetns, compilePlatform, Netns, nodeEnv, ROOT, tempDir, waitFor } from '../netns-harness'

const enabled = canUseNetns()

/** The stand-in listener: TCP and UDP on 0.0.0.0 and :: (v6-only, like two separate binds). */
const LISTENER = `
const net = require('net'), dgram = require('dgram')
const { getOriginalDst } = require(process.argv[2])
const port = Number(process.argv[3]), dnsPort = Number(process.argv[4]), gwDnsPort = Number(process.argv[5])
let pending = 6
const ready = () => { if (--pending === 0) console.log('ready') }
// UDP answers leave from the address the route to the client picks, unless the socket is bound
// to one: conntrack matches them only when that is where the query was redirected to.
const udp = (host, p) => {
  const u = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') })
  u.on('message', (m, r) => u.send('dns=' + p, r.port, r.address))
  u.bind(p, host, ready)
}
for (const host of ['127.0.0.1', '::1']) udp(host, dnsPort)
for (const host of ['0.0.0.0', '::']) {
  net.createServer((s) => {
    // Once conntrack runs, an un-NATed connection has an original destination too: itself.
    let orig = 'none'
    try {
      const d = getOriginalDst(s)
      if (d.host !== s.localAddress || d.port !== s.localPort) orig = d.family === 6 ? '[' + d.host + ']:' + d.port : d.host + ':' + d.port
    } catch {}
    console.log(JSON.stringify({ tcp: orig, local: s.localAddress }))
    s.on('error', () => {})
    s.end('orig=' + orig)
  }).listen({ port, host, ipv6Only: host === '::' }, ready)
  udp(host, gwDnsPort)
}
`

/** Client: each argv "tcp:host:port" or "udp:host:port" → what came back, or "error:<code>". */
const CLIENT = `
const net = require('net'), dgram = require('dgram')
function tcp(host, port) {
  return new Promise((resolve) => {
    let data = ''
    const s = net.connect({ host, port, timeout: 3000 })
    s.on('data', (d) => { data += d })
    s.on('end', () => resolve(data))
    s.on('timeout', () => { s.destroy(); resolve('error:timeout') })
    s.on('error', (e) => resolve('error:' + e.code))
  })
}
function udp(host, port) {
  return new Promise((resolve) => {
    const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4')
    const t = setTimeout(() => { u.close(); resolve('error:timeout') }, 3000)
    // The reply must come from where we sent (conntrack's reverse NAT), like a resolver checks.
    u.on('message', (m, r) => { clearTimeout(t); u.close(); resolve(m + ' from ' + r.address + ':' + r.port) })
    u.on('error', (e) => { clearTimeout(t); u.close(); resolve('error:' + e.code) })
    u.send('q', port, host)
  })
}
;(async () => {
  const out = {}
  for (const a of process.argv.slice(2)) {
    const [proto, rest] = [a.slice(0, 3), a.slice(4)]
    const i = rest.lastIndexOf(':')
    const host = rest.slice(0, i).replace(/^\\[|\\]$/g, ''), port = Number(rest.slice(i + 1))
    out[a] = proto === 'tcp' ? await tcp(host, port) : await udp(host, port)
  }
  console.log(JSON.stringify(out))
})()
`

describe.skipIf(!enabled)('gateway mode: traffic from a container behind a bridge', () => {
  let host: Netns
  let box: Netns
  let lan: Netns
  let work: string
  let stateDir: string
  let platformDir: string
  let listener: ChildProcess | undefined
  const clients: HelperClient[] = []
  const port = 20000 + Math.floor(Math.random() * 20000)
  const dnsPort = port + 1
  const gwDnsPort = port + 2

  beforeAll(async () => {
    work = tempDir('st-gw-')
    stateDir = path.join(work, 'state')
    platformDir = compilePlatform(path.join(work, 'build'))
    fs.writeFileSync(path.join(work, 'listener.js'), LISTENER)
    fs.writeFileSync(path.join(work, 'client.js'), CLIENT)
    host = new Netns()
    box = new Netns()
    // A Docker host forwards; it also makes uncaptured IPv4 fail fast (with forwarding off the
    // kernel drops it silently, so the client would only time out).
    host.sh('sysctl', '-qw', 'net.ipv4.ip_forward=1')
    host.sh('ip', 'link', 'add', 'br0', 'type', 'bridge')
    host.sh('ip', 'link', 'set', 'br0', 'up')
    host.sh('ip', 'addr', 'add', '10.88.0.1/24', 'dev', 'br0')
    host.sh('ip', '-6', 'addr', 'add', 'fd88::1/64', 'dev', 'br0', 'nodad')
    host.sh('ip', 'link', 'add', 'vh0', 'type', 'veth', 'peer', 'name', 'vc0', 'netns', box.name)
    host.sh('ip', 'link', 'set', 'vh0', 'master', 'br0')
    host.sh('ip', 'link', 'set', 'vh0', 'up')
    // An address of the host itself INSIDE a captured network: it must stay reachable as it is.
    host.sh('ip', 'addr', 'add', '10.77.5.1/32', 'dev', 'lo')
    host.sh('ip', '-6', 'addr', 'add', 'fd77:5::1/128', 'dev', 'lo')
    box.sh('ip', 'link', 'set', 'vc0', 'up')
    box.sh('ip', 'addr', 'add', '10.88.0.2/24', 'dev', 'vc0')
    box.sh('ip', '-6', 'addr', 'add', 'fd88::2/64', 'dev', 'vc0', 'nodad')
    box.sh('ip', 'route', 'add', 'default', 'via', '10.88.0.1')
    box.sh('ip', '-6', 'route', 'add', 'default', 'via', 'fd88::1')
    // The LAN neighbour, on another interface of the host.
    lan = new Netns()
    host.sh('ip', 'link', 'add', 'vl0', 'type', 'veth', 'peer', 'name', 'vn0', 'netns', lan.name)
    host.sh('ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'vl0')
    host.sh('ip', 'link', 'set', 'vl0', 'up')
    lan.sh('ip', 'link', 'set', 'vn0', 'up')
    lan.sh('ip', 'addr', 'add', '10.99.0.2/24', 'dev', 'vn0')
    lan.sh('ip', 'route', 'add', 'default', 'via', '10.99.0.1')
    // Readable by the unprivileged client of the --owner-only test.
    fs.chmodSync(work, 0o755)
    fs.chmodSync(path.join(work, 'client.js'), 0o644)

    listener = spawn('ip', ['netns', 'exec', host.name, process.execPath, path.join(work, 'listener.js'),
      path.join(platformDir, 'os/original-dst.js'), String(port), String(dnsPort), String(gwDnsPort)],
    { env: nodeEnv(stateDir), stdio: ['ignore', 'pipe', 'inherit'] })
    const ready = await new Promise<boolean>((resolve) => {
      let buf = ''
      listener!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        if (buf.includes('ready')) resolve(true)
      })
      listener!.once('exit', () => resolve(false))
    })
    expect(ready).toBe(true)
  }, 120_000)

  afterAll(async () => {
    try {
      for (const c of clients) await c.close().catch(() => {})
      if (listener?.pid && listener.exitCode === null && listener.signalCode === null) listener.kill('SIGKILL')
    } finally {
      host?.destroy()
      box?.destroy()
      lan?.destroy()
      if (work) fs.rmSync(work, { recursive: true, force: true })
    }
  })

  async function helper(): Promise<HelperClient> {
    const c = await startHelper({
      log: memoryLogger(),
      env: nodeEnv(stateDir),
      launch: {
        command: 'ip',
        args: ['netns', 'exec', host.name, process.execPath, path.join(platformDir, 'helper/helper-main.js')],
        viaSudo: false,
        interactive: false,
      },
    })
    clients.push(c)
    return c
  }

  /** Runs the client in a namespace (default: the container's), optionally as another uid. */
  function fromNs(ns: Netns, targets: string[], uid?: number): Record<string, string> {
    const as = uid === undefined ? [] : ['setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups']
    const out = ns.sh(...as, 'env', `NODE_PATH=${path.join(ROOT, 'node_modules')}`, process.execPath, path.join(work, 'client.js'), ...targets)
    return JSON.parse(out) as Record<string, string>
  }
  const fromBox = (...targets: string[]): Record<string, string> => fromNs(box, targets)

  const spec = (id: string, gateway = true): CaptureSpec => ({
    instanceId: id,
    listenPort: port,
    include: ['10.77.0.0/16', 'fd77::/16'].map(parseCidr),
    exclude: ['10.77.9.0/24', 'fd77:9::/32'].map(parseCidr),
    // A nameserver in the captured network, as a container would use it; 40053 is an exempt
    // source port of our (local) forwarder and must not matter for remote clients under nft.
    dns: { servers: ['10.77.0.53', 'fd77::53'], port: dnsPort, ...(gateway && { gatewayPort: gwDnsPort }), exemptSourcePorts: [40053] },
    ...(gateway && { gateway: true }),
  })
  const journalIds = (): string[] => (fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : [])

  const CAPTURED = ['tcp:10.77.1.2:80', 'tcp:[fd77:1::2]:80', 'udp:10.77.0.53:53', 'udp:[fd77::53]:53']
  const UNTOUCHED = [
    'tcp:10.77.9.9:80', // excluded (longest prefix wins)
    'tcp:[fd77:9::9]:80',
    'tcp:10.66.1.2:80', // not included
    'tcp:[fd66::2]:80',
  ]
  const HOST_OWN = [`tcp:10.77.5.1:${port}`, `tcp:[fd77:5::1]:${port}`, `tcp:10.88.0.1:${port}`]
  /** Nothing listens there on the host: refused by the host itself when not redirected. */
  const HOST_CLOSED = ['tcp:10.77.5.1:80', 'tcp:[fd77:5::1]:80']

  // br_netfilter (what Docker loads) makes bridged frames visit the IP hooks too; test with and
  // without it where the kernel has it (the sysctls are per namespace).
  const bridgeNf = fs.existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables') ? [1, 0] : [undefined]
  const cases = bridgeNf.flatMap((nf) => (['nft', 'nat'] as MethodName[]).map((method) => ({ method, nf })))
  for (const { method, nf } of cases) {
    const label = nf === undefined ? '' : ` (bridge-nf-call-*tables=${nf})`
    it(`${method}${label}: captures the container's TCP and DNS for the routed networks only; revert removes everything`, async () => {
      if (nf !== undefined) {
        host.sh('sysctl', '-qw', `net.bridge.bridge-nf-call-iptables=${nf}`, `net.bridge.bridge-nf-call-ip6tables=${nf}`)
      }
      // Before: nothing reaches the captured networks (the host has no route to them).
      const before = fromBox(...CAPTURED.slice(0, 2))
      for (const v of Object.values(before)) expect(v).toMatch(/^error:/)

      const h = await helper()
      try {
        const id = `gw${method}${nf ?? ''}`
        await h.apply(method, spec(id))
        const entry = JSON.parse(fs.readFileSync(path.join(stateDir, `${id}.json`), 'utf8')) as { gateway?: boolean }
        expect(entry.gateway).toBe(true)

        expect(fromBox(...CAPTURED)).toEqual({
          'tcp:10.77.1.2:80': 'orig=10.77.1.2:80',
          'tcp:[fd77:1::2]:80': 'orig=[fd77:1::2]:80',
          'udp:10.77.0.53:53': `dns=${gwDnsPort} from 10.77.0.53:53`,
          'udp:[fd77::53]:53': `dns=${gwDnsPort} from fd77::53:53`,
        })
        for (const [k, v] of Object.entries(fromBox(...UNTOUCHED))) expect(`${k} ${v}`).toMatch(/ error:/)
        // The host's own addresses (two inside the captured networks) are reached directly.
        expect(fromBox(...HOST_OWN)).toEqual(Object.fromEntries(HOST_OWN.map((t) => [t, 'orig=none'])))
        expect(fromBox(...HOST_CLOSED)).toEqual(Object.fromEntries(HOST_CLOSED.map((t) => [t, 'error:ECONNREFUSED'])))
        // Not an open resolver: a query sent to the interceptor's port directly is dropped,
        // on the container's side of the host and from the LAN alike.
        expect(fromBox(`udp:10.88.0.1:${gwDnsPort}`)).toEqual({ [`udp:10.88.0.1:${gwDnsPort}`]: 'error:timeout' })
        expect(fromNs(lan, [`udp:10.99.0.1:${gwDnsPort}`])).toEqual({ [`udp:10.99.0.1:${gwDnsPort}`]: 'error:timeout' })

        await h.revert()
        expect(host.rules()).not.toContain('subnet-tunnel-')
        expect(journalIds()).toEqual([])
        const after = fromBox(...CAPTURED.slice(0, 2))
        for (const v of Object.values(after)) expect(v).toMatch(/^error:/)
      } finally {
        await h.close()
      }
    }, 60_000)
  }

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: without gateway, the container's traffic is not captured`, async () => {
      const h = await helper()
      try {
        await h.apply(method, spec(`lo${method}`, false))
        for (const v of Object.values(fromBox(...CAPTURED.slice(0, 2)))) expect(v).toMatch(/^error:/)
      } finally {
        await h.close()
      }
      expect(host.rules()).not.toContain('subnet-tunnel-')
    }, 30_000)
  }

  // The LAN neighbour's view: the same captured targets, through the host.
  const LAN_CAPTURED = ['tcp:10.77.1.2:80', 'udp:10.77.0.53:53']
  const scopes: Array<[string, Partial<CaptureSpec>]> = [
    ['interface br0', { gatewayInterfaces: ['br0'] }],
    ['sources 10.88.0.0/24 + fd88::/64', { gatewaySources: ['10.88.0.0/24', 'fd88::/64'].map(parseCidr) }],
  ]
  for (const method of ['nft', 'nat'] as MethodName[]) {
    for (const [label, scope] of scopes) {
      it(`${method}: a gateway scoped to ${label} serves the container, not the LAN neighbour`, async () => {
        // As on a Docker host: bridged frames visit the IP hooks too (the bridge is still the
        // interface -i / iifname sees).
        if (bridgeNf[0] !== undefined) host.sh('sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1')
        // Unscoped (what --gateway did before): the LAN neighbour rides the tunnel too.
        const h0 = await helper()
        try {
          await h0.apply(method, spec(`ls${method}`))
          expect(fromNs(lan, LAN_CAPTURED.slice(0, 1))).toEqual({ 'tcp:10.77.1.2:80': 'orig=10.77.1.2:80' })
        } finally {
          await h0.close()
        }
        const h = await helper()
        try {
          await h.apply(method, { ...spec(`sc${method}${label.length}`), ...scope })
          expect(fromBox(...CAPTURED.slice(0, 3))).toEqual({
            'tcp:10.77.1.2:80': 'orig=10.77.1.2:80',
            'tcp:[fd77:1::2]:80': 'orig=[fd77:1::2]:80',
            'udp:10.77.0.53:53': `dns=${gwDnsPort} from 10.77.0.53:53`,
          })
          for (const [k, v] of Object.entries(fromNs(lan, LAN_CAPTURED))) expect(`${k} ${v}`).toMatch(/ error:/)
          await h.revert()
          expect(host.rules()).not.toContain('subnet-tunnel-')
        } finally {
          await h.close()
        }
      }, 60_000)
    }
  }

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: --owner-only captures the owner's connections and DNS on this host, not another uid's, which cannot query the DNS port directly either`, async () => {
      // Local programs need a route before the OUTPUT hook sees anything: via the LAN
      // neighbour, which does not forward (what is not captured vanishes there: a timeout).
      host.sh('ip', 'route', 'add', '10.77.0.0/16', 'via', '10.99.0.2')
      const h = await helper()
      try {
        const other = 61000 + Math.floor(Math.random() * 900)
        const targets = ['tcp:10.77.1.2:80', 'udp:10.77.0.53:53']
        // Without --owner-only every local user is captured (the documented default).
        await h.apply(method, { ...spec(`al${method}`, false) })
        expect(fromNs(host, targets, other)['tcp:10.77.1.2:80']).toBe('orig=10.77.1.2:80')
        await h.revert()

        await h.apply(method, { ...spec(`ow${method}`, false), ownerUid: 0 })
        expect(fromNs(host, targets)).toEqual({
          'tcp:10.77.1.2:80': 'orig=10.77.1.2:80',
          'udp:10.77.0.53:53': `dns=${dnsPort} from 10.77.0.53:53`,
        })
        expect(fromNs(host, [...targets, `udp:127.0.0.1:${dnsPort}`], other)).toEqual({
          'tcp:10.77.1.2:80': 'error:timeout',
          'udp:10.77.0.53:53': 'error:timeout',
          [`udp:127.0.0.1:${dnsPort}`]: 'error:timeout',
        })
        await h.revert()
        expect(host.rules()).not.toContain('subnet-tunnel-')
      } finally {
        await h.close()
        host.sh('ip', 'route', 'del', '10.77.0.0/16', 'via', '10.99.0.2')
      }
    }, 60_000)
  }

  for (const method of ['nft', 'nat'] as MethodName[]) {
    it(`${method}: with gateway, the host's own DNS goes to the loopback port and is answered as from the nameserver; the container's to the gateway port`, async () => {
      // A nameserver that is not one of the host's addresses: the query leaves from the host's
      // outgoing address, and the redirect sends it to the loopback address (local programs
      // need a route before the OUTPUT hook sees anything).
      host.sh('ip', 'route', 'add', '10.77.0.0/16', 'via', '10.99.0.2')
      host.sh('ip', '-6', 'route', 'add', 'fd77::/16', 'dev', 'vl0')
      const h = await helper()
      try {
        await h.apply(method, spec(`own${method}`))
        expect(fromNs(host, ['udp:10.77.0.53:53', 'udp:[fd77::53]:53'])).toEqual({
          'udp:10.77.0.53:53': `dns=${dnsPort} from 10.77.0.53:53`,
          'udp:[fd77::53]:53': `dns=${dnsPort} from fd77::53:53`,
        })
        expect(fromBox('udp:10.77.0.53:53')).toEqual({ 'udp:10.77.0.53:53': `dns=${gwDnsPort} from 10.77.0.53:53` })
        // Both ports are guarded: not even root on the host gets an answer there directly.
        const direct = [`udp:127.0.0.1:${dnsPort}`, `udp:127.0.0.1:${gwDnsPort}`, `udp:10.88.0.1:${gwDnsPort}`]
        expect(fromNs(host, direct)).toEqual(Object.fromEntries(direct.map((t) => [t, 'error:timeout'])))
        await h.revert()
        expect(host.rules()).not.toContain('subnet-tunnel-')
      } finally {
        await h.close()
        host.sh('ip', 'route', 'del', '10.77.0.0/16', 'via', '10.99.0.2')
        host.sh('ip', '-6', 'route', 'del', 'fd77::/16', 'dev', 'vl0')
      }
    }, 60_000)
  }

  it('nat: a helper killed with a scoped gateway, an owner and the DNS guard is cleaned up exactly', async () => {
    const h = await helper()
    const exited = new Promise((resolve) => h.onExit(resolve))
    await h.apply('nat', { ...spec('gwscope'), gatewayInterfaces: ['br0', 'vl0'], gatewaySources: [parseCidr('10.88.0.0/24')], ownerUid: 4242 })
    const rules = host.rules()
    expect(rules).toContain('-A PREROUTING -s 10.88.0.0/24 -i vl0 -j subnet-tunnel-gwscope')
    expect(rules).toContain('-A OUTPUT -m owner --uid-owner 4242 -j subnet-tunnel-gwscope')
    process.kill(h.pid!, 'SIGKILL')
    await exited
    const h2 = await helper()
    // warnings [] proves the journal's revert found every jump (filter table included) itself.
    expect(h2.startupCleanup).toEqual({ removed: ['instance gwscope (nat)'], kept: 0, warnings: [] })
    expect(host.rules()).not.toContain('subnet-tunnel-')
    await h2.close()
  })

  it('nat: a helper killed with gateway rules applied is cleaned up exactly (PREROUTING jump included)', async () => {
    const h = await helper()
    const exited = new Promise((resolve) => h.onExit(resolve))
    await h.apply('nat', spec('gwkill'))
    expect(host.rules()).toContain('-A PREROUTING -j subnet-tunnel-gwkill')
    process.kill(h.pid!, 'SIGKILL')
    await exited
    expect(host.rules()).toContain('subnet-tunnel-gwkill')

    const h2 = await helper()
    // warnings [] proves the journal's revert deleted the PREROUTING jump itself: with the jump
    // still in place, `-X` would fail and the kernel scan would have had to step in.
    expect(h2.startupCleanup).toEqual({ removed: ['instance gwkill (nat)'], kept: 0, warnings: [] })
    expect(host.rules()).not.toContain('subnet-tunnel-')
    expect(await waitFor(() => journalIds().length === 0, 1000)).toBe(true)
    await h2.close()
  })
})
