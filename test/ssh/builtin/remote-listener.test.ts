import * as fs from 'node:fs'
import * as net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseForward } from '../../../src/config/forward-spec'
import type { TunnelError } from '../../../src/errors'
import { type Logger, memoryLogger } from '../../../src/observe/logger'
import { ConnTracker } from '../../../src/router/conn-tracker'
import { RemoteForward } from '../../../src/router/remote-forward'
import type { SshRemoteListener } from '../../../src/ssh/builtin/remote-listener'
import { SshSession } from '../../../src/ssh/builtin/session'
import { freePort, once } from '../helpers'
import { type RealSshd, type SshdKeys, canRunSshd, makeSshdKeys, sessionTo, startRealSshd } from '../real-sshd-fixture'

type Sshd = RealSshd
let keys: SshdKeys

const startSshd = (name: string, extra: string[]): Promise<Sshd> => startRealSshd(keys, { name, extra })
const newSession = (port: number, minDelayMs = 500, log?: Logger): SshSession =>
  sessionTo(port, keys, { minDelayMs, maxDelayMs: 1000, forwardRetryMs: 100, ...(log && { log }) })

/** A loopback server that answers with `tag` + what it got, then "|end" after the peer's FIN. */
async function tagServer(tag: string): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>()
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    socks.add(s)
    s.on('close', () => socks.delete(s))
    s.on('error', () => {})
    s.write(tag)
    s.on('data', (d) => s.write(d))
    s.on('end', () => s.end('|end'))
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const s of socks) s.destroy()
        srv.close(() => r())
      }),
  }
}

/** Connects, sends `text` then FIN, and collects the reply until the peer closes. */
function roundTrip(port: number, text: string, host = '127.0.0.1'): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = ''
    const c = net.connect({ port, host, allowHalfOpen: true })
    c.on('data', (d) => (data += d))
    c.on('error', (e: NodeJS.ErrnoException) => resolve({ data, error: e.code }))
    c.on('close', () => resolve({ data }))
    c.end(text)
  })
}

const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms))

describe.skipIf(!canRunSshd)('RemoteForward against the real OpenSSH sshd', () => {
  const started: Sshd[] = []
  const sessions: SshSession[] = []
  const forwards: RemoteForward[] = []
  let a: Awaited<ReturnType<typeof tagServer>>
  let b: Awaited<ReturnType<typeof tagServer>>
  let main: Sshd
  let session: SshSession

  beforeAll(async () => {
    keys = makeSshdKeys()
    main = await startSshd('main', ['AllowTcpForwarding yes', 'GatewayPorts no'])
    started.push(main)
    a = await tagServer('A:')
    b = await tagServer('B:')
    session = newSession(main.port)
    sessions.push(session)
    await session.start()
  })

  afterAll(async () => {
    for (const f of forwards) await f.stop().catch(() => {})
    for (const s of sessions) await s.close()
    await a?.close()
    await b?.close()
    for (const s of started) await s.stop()
    if (keys) fs.rmSync(keys.dir, { recursive: true, force: true })
  })

  async function forward(text: string, s = session, log = memoryLogger(), tracker = new ConnTracker()) {
    const f = new RemoteForward({ spec: parseForward('remote', text), host: s, tracker, log })
    forwards.push(f)
    return { f, log, tracker }
  }

  it('-R 127.0.0.1:0:… gets a server-allocated port and pipes through, with half-close', async () => {
    const { f, log, tracker } = await forward(`127.0.0.1:0:127.0.0.1:${a.port}`)
    const port = await f.start()
    expect(port).toBeGreaterThan(0)
    expect(f.port).toBe(port)
    expect(f.state).toBe('active')
    expect(await roundTrip(port, 'hello')).toEqual({ data: 'A:hello|end' })
    await settle()
    // up = from the remote originator to the local target
    expect(tracker.totals).toMatchObject({ active: 0, total: 1, failed: 0, bytesUp: 5, bytesDown: 11 })
    expect(log.lines.join('\n')).toMatch(/#1 forward 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+ closed \(5 B up, 11 B down\)/)
    await f.stop()
    expect(f.state).toBe('stopped')
    expect((await roundTrip(port, 'x')).error).toBe('ECONNREFUSED')
  })

  it('several forwards on one connection each get only their own connections', async () => {
    const fa = (await forward(`0:127.0.0.1:${a.port}`)).f // default bind: "localhost" on the wire
    const fb = (await forward(`127.0.0.1:0:127.0.0.1:${b.port}`)).f
    const [pa, pb] = [await fa.start(), await fb.start()]
    expect(pa).not.toBe(pb)
    const results = await Promise.all([
      roundTrip(pa, '1'),
      roundTrip(pb, '2'),
      roundTrip(pa, '3'),
      roundTrip(pb, '4'),
    ])
    expect(results.map((r) => r.data)).toEqual(['A:1|end', 'B:2|end', 'A:3|end', 'B:4|end'])
    expect(fa.tracker.totals.total).toBe(2)
    expect(fb.tracker.totals.total).toBe(2)
    await fa.stop()
    // fb keeps working after fa is cancelled
    expect((await roundTrip(pb, '5')).data).toBe('B:5|end')
    await fb.stop()
  })

  it('stop() resets the connections still open', async () => {
    const { f, tracker } = await forward(`127.0.0.1:0:127.0.0.1:${a.port}`)
    const port = await f.start()
    const c = net.connect({ port, host: '127.0.0.1' })
    c.on('error', () => {})
    await new Promise((r) => c.once('data', r)) // "A:" from the local target: the pipe is up
    expect(tracker.totals.active).toBe(1)
    const closed = once(c, 'close', 3000)
    await f.stop()
    await closed
    await settle()
    expect(tracker.totals.active).toBe(0)
  })

  it('start() on a closed session → NOT_CONNECTED', async () => {
    const s = newSession(main.port)
    await s.close()
    const { f } = await forward(`0:127.0.0.1:${a.port}`, s)
    await expect(f.start()).rejects.toMatchObject({ code: 'NOT_CONNECTED' })
  })

  it('a refused local target closes the remote client and is logged', async () => {
    const closed = await freePort()
    const { f, log, tracker } = await forward(`127.0.0.1:0:127.0.0.1:${closed}`)
    const port = await f.start()
    const r = await roundTrip(port, 'x')
    expect(r.data).toBe('')
    await settle()
    expect(tracker.totals).toMatchObject({ total: 1, failed: 1, active: 0 })
    expect(log.lines.join('\n')).toMatch(new RegExp(`warning: #1 forward .* → 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED`))
    await f.stop()
  })

  it('a port already in use on the server → PORT_IN_USE saying so', async () => {
    // sshd runs on this machine, so a listener of ours occupies the port "on the server".
    const busy = net.createServer()
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
    const bport = (busy.address() as net.AddressInfo).port
    try {
      const { f } = await forward(`127.0.0.1:${bport}:127.0.0.1:${a.port}`)
      const err = (await f.start().catch((e: unknown) => e)) as TunnelError
      expect(err.code).toBe('PORT_IN_USE')
      expect(err.message).toBe(`-R 127.0.0.1:${bport}:127.0.0.1:${a.port}: port ${bport} is already in use on the SSH server`)
      expect(f.state).toBe('idle')
      // the diagnosis probe left no forward behind: the session still works for a new one
      const { f: ok } = await forward(`127.0.0.1:0:127.0.0.1:${a.port}`)
      expect((await roundTrip(await ok.start(), 'ok')).data).toBe('A:ok|end')
      await ok.stop()
    } finally {
      await new Promise((r) => busy.close(r))
    }
  })

  it('-R 0.0.0.0:… with GatewayPorts no: sshd binds loopback only, and we warn about GatewayPorts', async () => {
    const { f, log } = await forward(`0.0.0.0:0:127.0.0.1:${a.port}`)
    const port = await f.start()
    expect((await roundTrip(port, 'lo')).data).toBe('A:lo|end')
    // 127.0.0.2 is loopback too, but not the address sshd bound: it fell back to "localhost".
    expect((await roundTrip(port, 'x', '127.0.0.2')).error).toBe('ECONNREFUSED')
    expect(log.lines.join('\n')).toMatch(/warning: -R 0\.0\.0\.0:0:.*GatewayPorts clientspecified \(or yes\).*binds loopback only/)
    await f.stop()
  })

  it('with GatewayPorts clientspecified, -R 0.0.0.0:… binds every address', async () => {
    const gw = await startSshd('gw', ['AllowTcpForwarding yes', 'GatewayPorts clientspecified'])
    started.push(gw)
    const s = newSession(gw.port)
    sessions.push(s)
    await s.start()
    const { f } = await forward(`0.0.0.0:0:127.0.0.1:${a.port}`, s)
    const port = await f.start()
    expect((await roundTrip(port, 'any', '127.0.0.2')).data).toBe('A:any|end')
    await f.stop()
  })

  it('AllowTcpForwarding local → a clear "not permitted" refusal', async () => {
    const loc = await startSshd('local', ['AllowTcpForwarding local'])
    started.push(loc)
    const s = newSession(loc.port)
    sessions.push(s)
    await s.start()
    for (const text of [`127.0.0.1:0:127.0.0.1:${a.port}`, `${await freePort()}:127.0.0.1:${a.port}`]) {
      const { f } = await forward(text, s)
      const err = (await f.start().catch((e: unknown) => e)) as TunnelError
      expect(err.code).toBe('LISTEN')
      expect(err.message).toBe(`-R ${text}: the SSH server does not permit remote port forwarding`)
      expect(err.hint).toMatch(/AllowTcpForwarding no\/local.*restrict/)
    }
  })

  it('after the SSH connection is lost and comes back, the forward is requested again', async () => {
    const rc = await startSshd('reconnect', ['AllowTcpForwarding yes'])
    started.push(rc)
    // A 1 s first reconnect delay: the test must hold the port before the session is back.
    // The SSH engine re-requests the listener and logs it: one log for both.
    const log = memoryLogger()
    const s = newSession(rc.port, 1000, log)
    sessions.push(s)
    await s.start()
    const fixed = await freePort()
    const { f } = await forward(`127.0.0.1:${fixed}:127.0.0.1:${b.port}`, s, log)
    expect(await f.start()).toBe(fixed)
    expect((await roundTrip(fixed, 'before')).data).toBe('B:before|end')

    const kids = rc.children()
    expect(kids.length).toBe(1)
    // Re-requesting is the SSH engine's job: its listener says so.
    const listener = f.listener as SshRemoteListener
    const rebound = once<number>(listener, 'bound', 15_000)
    const down = once(s, 'down', 5000)
    process.kill(kids[0]!, 'SIGKILL') // the per-connection sshd: our client sees the connection drop
    await down
    // Play the usual outage: the port is still held on the server side (there, by an sshd
    // that has not noticed the old connection died) when we come back: the request must retry.
    const holder = net.createServer()
    // The killed sshd may take a moment to release the port: retry the bind briefly.
    for (let i = 0; ; i++) {
      const err = await new Promise<Error | undefined>((r) => {
        holder.once('error', r)
        holder.listen(fixed, '127.0.0.1', () => {
          holder.off('error', r)
          r(undefined)
        })
      })
      if (!err) break
      if (i >= 40) throw err
      await settle(25)
    }
    await once(s, 'up', 5000)
    await settle(300)
    expect(listener.state).toBe('down')
    await new Promise((r) => holder.close(r))
    expect(await rebound).toBe(fixed)
    expect(listener.state).toBe('active')
    expect((await roundTrip(fixed, 'after')).data).toBe('B:after|end')
    const text = log.lines.join('\n')
    expect(text).toMatch(/warning: -R 127\.0\.0\.1:\d+:.*re-requesting after reconnect failed: .*already in use on the SSH server; retrying in 0\.1 s/)
    expect(text).toContain(`-R 127.0.0.1:${fixed}:127.0.0.1:${b.port}: forward re-established after reconnect (server port ${fixed})`)
    await f.stop()
  })
})
