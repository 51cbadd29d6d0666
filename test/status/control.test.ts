import { spawnSync } from 'node:child_process'
import { promises as fs } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isTunnelError } from '../../src/errors'
import { findInstances, listInstances, queryInstance, requestStop } from '../../src/status/control-client'
import { ControlServer, defaultControlDir, ensureControlDir } from '../../src/status/control-server'
import { memoryLogger } from '../../src/observe/logger'
import type { StatusSnapshot } from '../../src/status/status-types'
import { trickle } from '../router/proxy-test-helpers'

function snap(instanceId: string, startedAt = '2024-05-01T10:00:00.000Z'): StatusSnapshot {
  return {
    pid: process.pid,
    version: '0.1.0',
    instanceId,
    startedAt,
    uptimeS: 5,
    remotes: [{ name: 'bastion', hostPort: '10.0.0.1:22', state: 'up', reconnects: 0, channelsOpen: 1 }],
    subnets: ['10.0.0.0/16'],
    excludes: [],
    proxies: [],
    forwards: [],
    totals: { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 },
    connections: [],
  }
}

/** Sends raw bytes, returns everything the server answered before closing. */
function raw(socketPath: string, data: string, end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath)
    let out = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => (out += d))
    s.on('error', reject)
    s.on('close', () => resolve(out))
    s.on('connect', () => (end ? s.end(data) : s.write(data)))
  })
}

describe('control socket', () => {
  let base: string
  let dir: string
  const servers: ControlServer[] = []

  beforeEach(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'st-ctl-'))
    dir = path.join(base, 'run')
  })
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop()
    await fs.rm(base, { recursive: true, force: true })
  })

  async function start(id: string, s: (o: { brief: boolean }) => StatusSnapshot | Promise<StatusSnapshot> = () => snap(id), limits: { deadlineMs?: number; maxClients?: number } = {}) {
    const server = new ControlServer({ dir, instanceId: id, snapshot: s, log: memoryLogger(), ...limits })
    servers.push(server)
    await server.start()
    return server
  }

  it('asks for the brief status when finding instances to clash-check or stop, the full one for `status`', async () => {
    // Every tunnel start on the machine finds every instance: a full status would make each of
    // them scan /proc for every open connection (the bench saw 55 % of a tunnel's CPU go there).
    const asked: boolean[] = []
    await start('brf1', ({ brief }) => {
      asked.push(brief)
      return snap('brf1')
    })
    await findInstances({ dir, brief: true })
    await findInstances({ dir })
    await listInstances({ dir })
    expect(asked).toEqual([true, false, false])
  })

  it('round-trips a status over a 0600 socket in a 0700 directory', async () => {
    const server = await start('abc1')
    expect(server.path).toBe(path.join(dir, 'abc1.sock'))
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700)
    const st = await fs.stat(server.path)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
    const got = await queryInstance(server.path)
    expect(got).toEqual(snap('abc1'))
  })

  it('lists every instance oldest first and removes stale sockets', async () => {
    await start('bbb', () => snap('bbb', '2024-05-02T00:00:00.000Z'))
    await start('aaa', async () => snap('aaa', '2024-05-01T00:00:00.000Z'))
    // A dead instance: a socket file nobody listens on any more.
    const stale = path.join(dir, 'dead.sock')
    // A SIGKILLed instance leaves its socket file behind with nobody listening.
    const child = spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ])
    expect(child.signal).toBe('SIGKILL')
    await fs.writeFile(path.join(dir, 'notes.txt'), 'ignored')
    expect((await fs.stat(stale)).isSocket()).toBe(true)

    const list = await listInstances({ dir })
    expect(list.map((s) => s.instanceId)).toEqual(['aaa', 'bbb'])
    await expect(fs.stat(stale)).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await fs.readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('ignored')
  })

  it('takes over the socket file a dead instance with the same id left behind', async () => {
    await fs.mkdir(dir, { mode: 0o700 })
    const leftover = path.join(dir, 'again.sock')
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(leftover)}, () => process.kill(process.pid, 'SIGKILL'))`])
    expect((await fs.stat(leftover)).isSocket()).toBe(true)
    await start('again')
    expect((await queryInstance(leftover)).instanceId).toBe('again')
  })

  it('lists nothing when the directory does not exist', async () => {
    expect(await listInstances({ dir: path.join(base, 'nope') })).toEqual([])
  })

  it('skips (but keeps) an instance that does not answer in time', async () => {
    await start('slow', () => new Promise<StatusSnapshot>((r) => setTimeout(() => r(snap('slow')), 1500)))
    await start('fast')
    const list = await listInstances({ dir, timeoutMs: 300 })
    expect(list.map((s) => s.instanceId)).toEqual(['fast'])
    expect((await fs.stat(path.join(dir, 'slow.sock'))).isSocket()).toBe(true)
  })

  it('stop: answers first, then begins the stop; an instance that cannot stop says so', async () => {
    let stops = 0
    const server = new ControlServer({ dir, instanceId: 'stp', snapshot: () => snap('stp'), onStop: () => void stops++, log: memoryLogger() })
    servers.push(server)
    await server.start()
    const [found] = await findInstances({ dir })
    expect(found).toMatchObject({ socketPath: server.path, status: { instanceId: 'stp' } })
    await requestStop(found!.socketPath)
    await new Promise((r) => setImmediate(r))
    expect(stops).toBe(1)
    const old = await start('old')
    await expect(requestStop(old.path)).rejects.toMatchObject({ code: 'CONTROL', message: expect.stringContaining('unknown op "stop"') })
  })

  it('answers bad requests with an error line and keeps serving', async () => {
    const server = await start('bad1')
    expect(JSON.parse(await raw(server.path, '{"op":"reboot"}\n'))).toEqual({ ok: false, error: 'unknown op "reboot"' })
    expect(JSON.parse(await raw(server.path, 'not json\n'))).toEqual({ ok: false, error: 'request is not JSON' })
    expect(JSON.parse(await raw(server.path, '[1,2]\n')).ok).toBe(false)
    expect(JSON.parse(await raw(server.path, 'x'.repeat(10_000)))).toEqual({ ok: false, error: 'request line too long' })
    expect(JSON.parse(await raw(server.path, '', true))).toEqual({ ok: false, error: 'empty request' })
    // A request without newline, then half-close: still answered.
    expect(JSON.parse(await raw(server.path, '{"op":"status"}', true)).status.instanceId).toBe('bad1')
    expect((await queryInstance(server.path)).instanceId).toBe('bad1')
  })

  it('closes a client trickling its request one byte every 30 ms at the absolute deadline', async () => {
    const server = await start('trickle', undefined, { deadlineMs: 400 })
    const c = net.connect(server.path)
    await new Promise((r) => c.once('connect', r))
    const took = await trickle(c, Buffer.from(`{"op":"status","pad":"${'x'.repeat(200)}"}\n`), 30, 3_000)
    expect(took, 'still open 3 s later').toBeDefined()
    expect(took!).toBeLessThan(1_500)
  })

  it('closes clients over the cap on accept, and serves again once one leaves', async () => {
    const server = await start('capped', undefined, { maxClients: 2 })
    const idle = [net.connect(server.path), net.connect(server.path)]
    await Promise.all(idle.map((c) => new Promise((r) => c.once('connect', r))))
    await new Promise((r) => setTimeout(r, 50))
    // The extra client is closed unanswered (its write may then fail with EPIPE).
    const extra = await raw(server.path, '{"op":"status"}\n').catch((e: NodeJS.ErrnoException) => e.code)
    expect(['', 'EPIPE', 'ECONNRESET']).toContain(extra)
    idle[0]!.destroy()
    await new Promise((r) => setTimeout(r, 50))
    expect((await queryInstance(server.path)).instanceId).toBe('capped')
    idle[1]!.destroy()
  })

  it('reports a snapshot failure as an error, not a dead server', async () => {
    const server = await start('boom', () => {
      throw new Error('not ready')
    })
    const err = await queryInstance(server.path).catch((e: unknown) => e)
    expect(isTunnelError(err, 'CONTROL')).toBe(true)
    expect((err as Error).message).toContain('not ready')
  })

  it('removes the socket file on stop, and stop is idempotent', async () => {
    const server = await start('stop1')
    await server.stop()
    await server.stop()
    await expect(fs.stat(server.path)).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await listInstances({ dir })).toEqual([])
  })

  it('refuses to steal the socket of a live instance with the same id', async () => {
    await start('dup')
    const err = await start('dup').catch((e: unknown) => e)
    expect(isTunnelError(err, 'CONTROL')).toBe(true)
    servers.pop() // never started
    expect((await queryInstance(path.join(dir, 'dup.sock'))).instanceId).toBe('dup')
  })

  it('refuses a directory other users can enter', async () => {
    await fs.mkdir(dir, { mode: 0o755 })
    await fs.chmod(dir, 0o755)
    const err = await start('perm').catch((e: unknown) => e)
    servers.pop()
    expect(isTunnelError(err, 'CONTROL')).toBe(true)
    expect((err as Error).message).toMatch(/0755 lets other users in/)
    await expect(listInstances({ dir })).rejects.toMatchObject({ code: 'CONTROL' })
  })

  it('refuses a symlink in place of the directory', async () => {
    const real = path.join(base, 'real')
    await fs.mkdir(real, { mode: 0o700 })
    await fs.symlink(real, dir)
    await expect(ensureControlDir(dir, true)).rejects.toMatchObject({ code: 'CONTROL' })
  })

  it('refuses a directory owned by someone else', async () => {
    if (process.getuid?.() !== 0) return // only root can give a directory away
    await fs.mkdir(dir, { mode: 0o700 })
    await fs.chown(dir, 65534, 65534)
    await expect(ensureControlDir(dir, true)).rejects.toThrow(/owned by uid 65534/)
  })

  it('rejects instance ids that could escape the directory', () => {
    expect(() => new ControlServer({ dir, instanceId: '../x', snapshot: () => snap('x'), log: memoryLogger() })).toThrow()
  })

  it('defaults to XDG_RUNTIME_DIR, else a per-uid directory in /tmp', () => {
    expect(defaultControlDir({ XDG_RUNTIME_DIR: '/run/user/1000' })).toBe('/run/user/1000/subnet-tunnel')
    expect(defaultControlDir({})).toBe(path.join(os.tmpdir(), `subnet-tunnel-${process.getuid?.()}`))
  })
})
