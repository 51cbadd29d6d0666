import { readFileSync, promises as fs } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ConnProcesses, isLocalAddress, lookupLocalProcess, procHexAddress, procKeys } from '../../src/status/proc-lookup'
import type { ProcessInfo } from '../../src/status/status-types'
import type { TrackedConn } from '../../src/router/conn-tracker'
import type { FrontEnd } from '../../src/router/types'

const linux = process.platform === 'linux'
const le = os.endianness() === 'LE'

/** Our own command line as /proc shows it (vitest runs tests in a child process). */
const ownCommand = readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 255)

const cleanup: Array<() => unknown> = []
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f()
})

/** A real TCP connection inside this process; resolves the accepted (server-side) socket. */
async function connectPair(listenHost: string, connectHost: string): Promise<{ accepted: net.Socket; port: number; client: net.Socket }> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen({ host: listenHost, port: 0, ipv6Only: false }, () => r()))
  const port = (server.address() as net.AddressInfo).port
  const acceptedP = new Promise<net.Socket>((r) => server.once('connection', r))
  const client = net.connect({ host: connectHost, port })
  await new Promise<void>((r) => client.once('connect', () => r()))
  const accepted = await acceptedP
  cleanup.push(() => {
    client.destroy()
    accepted.destroy()
    server.close()
  })
  return { accepted, port, client }
}

describe('/proc/net/tcp address encoding', () => {
  it.runIf(le)('prints IPv4 as one little-endian word and IPv6 as four', () => {
    expect(procHexAddress([127, 0, 0, 1])).toBe('0100007F')
    expect(procHexAddress([10, 250, 0, 2])).toBe('0200FA0A')
    const v6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2] // fd00::2
    expect(procHexAddress(v6)).toBe('000000FD000000000000000002000000')
  })

  it.runIf(le)('gives the keys for both files, v4-mapped included', () => {
    expect(procKeys('127.0.0.1', 8080)).toEqual({ tcp: '0100007F:1F90', tcp6: '0000000000000000FFFF00000100007F:1F90' })
    expect(procKeys('::ffff:127.0.0.1', 8080)).toEqual(procKeys('127.0.0.1', 8080))
    expect(procKeys('::1', 1)).toEqual({ tcp6: '00000000000000000000000001000000:0001' })
    expect(procKeys('fe80::1%eth0', 65535).tcp6).toBe('000080FE000000000000000001000000:FFFF')
  })
})

describe.runIf(linux)('lookupLocalProcess against real sockets', () => {
  it('finds our own process for an IPv4 loopback client', async () => {
    const { accepted, port } = await connectPair('127.0.0.1', '127.0.0.1')
    const p = await lookupLocalProcess(accepted.remoteAddress!, accepted.remotePort!, port)
    expect(p).toEqual({ pid: process.pid, command: ownCommand, uid: process.getuid!() })
  })

  it('finds our own process for an IPv6 loopback client', async () => {
    const { accepted, port } = await connectPair('::1', '::1')
    expect(accepted.remoteAddress).toBe('::1')
    const p = await lookupLocalProcess('::1', accepted.remotePort!, port)
    expect(p?.pid).toBe(process.pid)
    expect(p?.command).toBe(ownCommand)
  })

  it('finds an IPv4 client seen through a dual-stack listener (::ffff:127.0.0.1)', async () => {
    const { accepted } = await connectPair('::', '127.0.0.1')
    expect(accepted.remoteAddress).toBe('::ffff:127.0.0.1')
    const p = await lookupLocalProcess(accepted.remoteAddress!, accepted.remotePort!)
    expect(p?.pid).toBe(process.pid)
  })

  it('does not confuse the client socket with the accepted one', async () => {
    const { accepted, client } = await connectPair('127.0.0.1', '127.0.0.1')
    // The listener's side has local port = the server port; looking that up must not find the
    // accepted socket as "the client" unless remote port matches the client's.
    expect(client.localPort).toBe(accepted.remotePort)
    const p = await lookupLocalProcess('127.0.0.1', client.localPort!, accepted.localPort)
    expect(p?.pid).toBe(process.pid)
  })

  it('returns null quickly for a socket that does not exist', async () => {
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const free = (server.address() as net.AddressInfo).port
    await new Promise<void>((r) => server.close(() => r()))
    const t0 = Date.now()
    expect(await lookupLocalProcess('127.0.0.1', free)).toBeNull()
    expect(await lookupLocalProcess('192.0.2.1', 4444)).toBeNull()
    expect(await lookupLocalProcess('not an address', 1)).toBeNull()
    expect(Date.now() - t0).toBeLessThan(1000)
  })
})

describe.runIf(linux && le)('lookupLocalProcess on a fake /proc', () => {
  async function fakeProc(lines: { tcp?: string[]; tcp6?: string[] }, pids: Record<number, { fds: string[]; cmdline: string }>) {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'st-proc-'))
    cleanup.push(() => fs.rm(root, { recursive: true, force: true }))
    const head = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode'
    await fs.mkdir(path.join(root, 'net'))
    await fs.writeFile(path.join(root, 'net/tcp'), [head, ...(lines.tcp ?? [])].join('\n') + '\n')
    await fs.writeFile(path.join(root, 'net/tcp6'), [head, ...(lines.tcp6 ?? [])].join('\n') + '\n')
    for (const [pid, p] of Object.entries(pids)) {
      await fs.mkdir(path.join(root, pid, 'fd'), { recursive: true })
      for (const [i, target] of p.fds.entries()) await fs.symlink(target, path.join(root, pid, 'fd', String(i)))
      await fs.writeFile(path.join(root, pid, 'cmdline'), p.cmdline)
      await fs.writeFile(path.join(root, pid, 'comm'), 'kworker\n')
      await fs.writeFile(path.join(root, pid, 'status'), `Name:\tx\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`)
    }
    return root
  }
  const uid = process.getuid!()
  // fd00::2 port 45678 (0xB26E) connected to fd00::1 port 80 (0x50), ESTABLISHED (01).
  const v6line = `   3: 000000FD000000000000000002000000:B26E 000000FD000000000000000001000000:0050 01 00000000:00000000 00:00000000 00000000  ${uid}        0 777 1 0 20 4 30 10 -1`
  // 10.250.0.2:45678 → 10.0.1.20:3306 (0x0CEA); a TIME_WAIT twin (inode 0) and a LISTEN line on the same port.
  const v4lines = [
    `   0: 0200FA0A:B26E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  ${uid}        0 111 1 0 100 0 0 10 0`,
    `   1: 0200FA0A:B26E 1401000A:0CEA 06 00000000:00000000 03:00000E82 00000000     0        0 0 3 0`,
    `   2: 0200FA0A:B26E 1401000A:0CEA 01 00000000:00000000 00:00000000 00000000  ${uid}        0 555 1 0 20 4 30 10 -1`,
  ]

  it('parses IPv6 words and follows the inode to the pid and its command', async () => {
    const root = await fakeProc({ tcp6: [v6line] }, {
      101: { fds: ['/dev/null', 'socket:[776]'], cmdline: 'other\0' },
      202: { fds: ['pipe:[5]', 'socket:[777]'], cmdline: '/usr/bin/curl\0-s\0http://[fd00::1]/\0' },
    })
    expect(await lookupLocalProcess('fd00::2', 45678, 80, { procRoot: root })).toEqual({
      pid: 202,
      command: '/usr/bin/curl -s http://[fd00::1]/',
      uid,
    })
  })

  it('skips LISTEN and TIME_WAIT lines; uses comm for an empty cmdline; truncates long commands', async () => {
    const root = await fakeProc({ tcp: v4lines }, { 303: { fds: ['socket:[555]'], cmdline: '' } })
    expect(await lookupLocalProcess('10.250.0.2', 45678, 3306, { procRoot: root })).toEqual({ pid: 303, command: '[kworker]', uid })
    const root2 = await fakeProc({ tcp: v4lines }, { 304: { fds: ['socket:[555]'], cmdline: 'x'.repeat(1000) } })
    const p = await lookupLocalProcess('10.250.0.2', 45678, 3306, { procRoot: root2 })
    expect(p?.command).toHaveLength(256)
    expect(p?.command?.endsWith('…')).toBe(true)
  })

  it('returns the uid alone when no process holds the inode', async () => {
    const root = await fakeProc({ tcp: v4lines }, { 404: { fds: ['socket:[1]'], cmdline: 'x\0' } })
    expect(await lookupLocalProcess('10.250.0.2', 45678, undefined, { procRoot: root })).toEqual({ pid: null, command: null, uid })
  })

  it('respects the pid cap', async () => {
    const pids: Record<number, { fds: string[]; cmdline: string }> = {}
    for (let i = 0; i < 20; i++) pids[1000 + i] = { fds: [], cmdline: 'x\0' }
    pids[1] = { fds: ['socket:[555]'], cmdline: 'init\0' } // oldest pid: scanned last
    const root = await fakeProc({ tcp: v4lines }, pids)
    expect((await lookupLocalProcess('10.250.0.2', 45678, 3306, { procRoot: root, maxPids: 5 }))?.pid).toBeNull()
    expect((await lookupLocalProcess('10.250.0.2', 45678, 3306, { procRoot: root }))?.pid).toBe(1)
  })
})

describe('ConnProcesses', () => {
  const conn = (id: number, frontEnd: FrontEnd, srcAddress: string, dstPort = 443): TrackedConn => ({
    meta: { id, frontEnd, srcAddress, srcPort: 40000 + id },
    dst: { host: '10.0.0.5', port: dstPort },
    startedAt: Date.now(),
    bytesUp: 0,
    bytesDown: 0,
  })

  it('looks up local clients only, with the original port for redirected ones', async () => {
    const calls: Array<[string, number, number | undefined]> = []
    const found: ProcessInfo = { pid: 7, command: 'curl', uid: 1000 }
    const cp = new ConnProcesses({
      lookup: async (a, p, d) => (calls.push([a, p, d]), found),
      isLocal: (a) => a === '127.0.0.1',
    })
    expect(await cp.start(conn(1, 'transparent', '127.0.0.1', 3306))).toEqual(found)
    expect(await cp.start(conn(2, 'socks5', '127.0.0.1'))).toEqual(found)
    expect(await cp.start(conn(3, 'socks5', '172.17.0.2'))).toBeNull()
    expect(calls).toEqual([
      ['127.0.0.1', 40001, 3306],
      ['127.0.0.1', 40002, undefined],
    ])
    expect(cp.get(1)).toEqual(found)
    expect(cp.get(3)).toBeUndefined()
    cp.closed(conn(1, 'transparent', '127.0.0.1'))
    expect(cp.get(1)).toBeUndefined()
  })

  it('starts one lookup per connection and caps concurrency and queue', async () => {
    let running = 0
    let peak = 0
    let calls = 0
    const release: Array<() => void> = []
    const cp = new ConnProcesses({
      isLocal: () => true,
      maxConcurrent: 2,
      maxQueued: 3,
      lookup: () => {
        calls++
        running++
        peak = Math.max(peak, running)
        return new Promise((r) => release.push(() => (running--, r({ pid: 1, command: 'x', uid: 0 }))))
      },
    })
    const c1 = conn(1, 'http', '127.0.0.1')
    const same = [cp.start(c1), cp.start(c1)]
    expect(same[0]).toBe(same[1])
    const all = [same[0], ...[2, 3, 4, 5, 6, 7].map((i) => cp.start(conn(i, 'http', '127.0.0.1')))]
    // 2 running + 3 queued; the 6th and 7th are skipped rather than queued.
    expect(await all[5]).toBeNull()
    expect(await all[6]).toBeNull()
    while (release.length > 0 || running > 0) {
      release.shift()?.()
      await new Promise((r) => setImmediate(r))
    }
    const results = await Promise.all(all.slice(0, 5))
    expect(results.every((r) => r?.pid === 1)).toBe(true)
    expect(peak).toBe(2)
    expect(calls).toBe(5)
  })

  it('never rejects, even when the lookup throws', async () => {
    const cp = new ConnProcesses({ isLocal: () => true, lookup: () => Promise.reject(new Error('x')) })
    expect(await cp.start(conn(1, 'forward', '::1'))).toBeNull()
  })

  it('treats loopback and our own interface addresses as local', () => {
    expect(isLocalAddress('127.0.0.1')).toBe(true)
    expect(isLocalAddress('::ffff:127.0.0.1')).toBe(true)
    expect(isLocalAddress('::1')).toBe(true)
    expect(isLocalAddress('192.0.2.77')).toBe(false)
    const ifAddr = Object.values(os.networkInterfaces()).flat().find((i) => i && !i.internal)
    if (ifAddr) expect(isLocalAddress(ifAddr.address)).toBe(true)
  })
})

describe.runIf(le)('socket table reads are shared', () => {
  // A fake /proc with one socket table: lines in /proc/net/tcp's format, inode and uid given.
  const line = (sl: number, local: string, rem: string, uid: number, inode: number): string =>
    `  ${sl}: ${local} ${rem} 01 00000000:00000000 00:00000000 00000000 ${uid} 0 ${inode} 1 0000000000000000 20 4 30 10 -1`
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode'

  it('a lookup asked for before a read started shares it; one asked for after it reads again', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'st-proc-'))
    cleanup.push(() => fs.rm(root, { recursive: true, force: true }))
    await fs.mkdir(path.join(root, 'net'))
    const tcp = path.join(root, 'net', 'tcp')
    const a = `${procKeys('127.0.0.1', 40001).tcp}`
    const b = `${procKeys('127.0.0.1', 40002).tcp}`
    await fs.writeFile(tcp, [header, line(0, a, '0100007F:0050', 4242, 111)].join('\n') + '\n')
    const asked = Date.now()
    const opts = { procRoot: root, notBefore: asked, maxPids: 0 }
    expect(await lookupLocalProcess('127.0.0.1', 40001, 80, opts)).toEqual({ pid: null, command: null, uid: 4242 })
    // The second socket appears after that read: a lookup asked for before the read started
    // shares it (and cannot see the socket — proof of the sharing)…
    await fs.writeFile(tcp, [header, line(0, a, '0100007F:0050', 4242, 111), line(1, b, '0100007F:0050', 4343, 222)].join('\n') + '\n')
    expect(await lookupLocalProcess('127.0.0.1', 40002, 80, opts)).toBeNull()
    // …one asked for later gets a read of its own and finds it.
    await new Promise((r) => setTimeout(r, 5))
    expect(await lookupLocalProcess('127.0.0.1', 40002, 80, { procRoot: root, maxPids: 0 })).toEqual({ pid: null, command: null, uid: 4343 })
  })
})
