/**
 * The redirect case for real: inside a throwaway network namespace, a client connects from a
 * non-loopback local address (10.250.0.2) to 10.99.0.5:80, iptables REDIRECTs it to a listener
 * on 127.0.0.1, and the lookup — given the address the listener saw — finds the client process.
 * Root only; rules exist only inside the namespace, which is deleted afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lookupLocalProcess } from '../../src/status/proc-lookup'
import { Netns, canUseNetns } from '../platform/netns-harness'

const LISTEN_PORT = 18080

// Runs inside the namespace: listen, connect to a redirected address, report what was accepted.
const CHILD = `
const net = require('net')
const server = net.createServer((s) => {
  process.stdout.write(JSON.stringify({ pid: process.pid, remoteAddress: s.remoteAddress, remotePort: s.remotePort,
    clientLocal: client.localAddress + ':' + client.localPort }) + '\\n')
})
let client
server.listen(${LISTEN_PORT}, '127.0.0.1', () => { client = net.connect(80, '10.99.0.5') })
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
`

describe.skipIf(!canUseNetns())('lookupLocalProcess for a kernel-redirected connection (netns)', () => {
  let ns: Netns | undefined
  let child: ChildProcess | undefined
  let seen: { pid: number; remoteAddress: string; remotePort: number; clientLocal: string }

  beforeAll(async () => {
    ns = new Netns()
    // A veth pair with both ends in the namespace (no dummy module everywhere): v0 carries the
    // client's source address and the route to the "remote" subnet.
    ns.sh('ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1')
    ns.sh('ip', 'addr', 'add', '10.250.0.2/24', 'dev', 'v0')
    ns.sh('ip', 'link', 'set', 'v0', 'up')
    ns.sh('ip', 'link', 'set', 'v1', 'up')
    ns.sh('ip', 'route', 'add', '10.99.0.0/16', 'dev', 'v0')
    ns.sh('iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '10.99.0.0/16', '-j', 'REDIRECT', '--to-ports', String(LISTEN_PORT))
    child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] })
    seen = await new Promise((resolve, reject) => {
      let buf = ''
      child!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]))
      })
      child!.once('exit', (code) => reject(new Error(`child exited ${code}`)))
      setTimeout(() => reject(new Error('child did not report')), 10_000)
    })
  })

  afterAll(() => {
    child?.stdin?.end()
    if (child?.pid && child.exitCode === null) child.kill()
    ns?.destroy()
  })

  it('sees the real source address and finds the client process', async () => {
    expect(seen.remoteAddress).toBe('10.250.0.2')
    expect(seen.clientLocal).toBe(`10.250.0.2:${seen.remotePort}`)
    // /proc/<pid>/net shows the socket tables of that process's namespace.
    const p = await lookupLocalProcess(seen.remoteAddress, seen.remotePort, 80, { netDir: `/proc/${seen.pid}/net` })
    expect(p?.pid).toBe(seen.pid)
    expect(p?.command).toContain(`${process.execPath} -e`)
    expect(p?.uid).toBe(0)
    // In our own namespace that socket does not exist.
    expect(await lookupLocalProcess(seen.remoteAddress, seen.remotePort, 80)).toBeNull()
  })
})
