import { promises as fs } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AuditLog, type AuditConnLine } from '../../src/status/audit-log'
import { memoryLogger } from '../../src/observe/logger'
import { ConnProcesses } from '../../src/status/proc-lookup'
import { ConnTracker } from '../../src/router/conn-tracker'

let dir: string
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'st-audit-'))
})
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})

async function readLines(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await fs.readFile(file, 'utf8')
  expect(text.endsWith('\n')).toBe(true)
  return text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe('AuditLog', () => {
  it('writes one JSON line per closed connection, mode 0600, with the loopback client process', async () => {
    const file = path.join(dir, 'audit.jsonl')
    const log = memoryLogger()
    const audit = await AuditLog.open(file, { log, remoteFor: (d) => (d.host.startsWith('10.1.') ? 'bastion-b' : undefined) })
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    const tracker = new ConnTracker()
    tracker.observe(audit)

    // A real loopback client in this process, as a proxy front-end would see it.
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    const sock = await accepted
    const c = tracker.open(
      { id: tracker.nextId(), frontEnd: 'socks5', srcAddress: sock.remoteAddress!, srcPort: sock.remotePort! },
      { host: 'db.corp.internal', port: 5432 },
    )
    c.bytesUp = 120
    c.bytesDown = 4567
    const failed = tracker.open({ id: tracker.nextId(), frontEnd: 'transparent', srcAddress: '172.17.0.2', srcPort: 3333 }, { host: '10.1.2.3', port: 443 })
    tracker.close(failed, 'channel open refused: connection refused')
    await new Promise((r) => setTimeout(r, 20))
    tracker.close(c)
    // close() waits for the process lookup started at open; the client socket lives until then,
    // as it would for any client whose connection we are still piping.
    await audit.close()
    const clientPort = client.localPort
    client.destroy()
    sock.destroy()
    server.close()

    const lines = await readLines(file)
    expect(lines).toHaveLength(2)
    const byId = new Map(lines.map((l) => [l.id, l as unknown as AuditConnLine]))
    const ok = byId.get(1)!
    expect(ok).toMatchObject({
      type: 'conn',
      frontEnd: 'socks5',
      src: `127.0.0.1:${clientPort}`,
      dst: 'db.corp.internal:5432',
      remote: null,
      bytesUp: 120,
      bytesDown: 4567,
      result: 'ok',
      process: { pid: process.pid, uid: process.getuid!() },
    })
    expect(ok.process!.command).toContain('node')
    expect(ok).not.toHaveProperty('error')
    expect(ok.durationMs).toBeGreaterThanOrEqual(15)
    expect(Date.parse(ok.time) - Date.parse(ok.start)).toBe(ok.durationMs)
    const bad = byId.get(2)!
    expect(bad).toMatchObject({
      frontEnd: 'transparent',
      src: '172.17.0.2:3333',
      dst: '10.1.2.3:443',
      remote: 'bastion-b',
      process: null,
      result: 'error',
      error: 'channel open refused: connection refused',
    })
  })

  it('uses a shared ConnProcesses regardless of observer order', async () => {
    const file = path.join(dir, 'a.jsonl')
    let calls = 0
    const processes = new ConnProcesses({ isLocal: () => true, lookup: async () => (calls++, { pid: 9, command: 'psql', uid: 1 }) })
    const audit = await AuditLog.open(file, { log: memoryLogger(), processes })
    const tracker = new ConnTracker()
    tracker.observe(processes) // its closed() runs first and forgets the entry
    tracker.observe(audit)
    const c = tracker.open({ id: tracker.nextId(), frontEnd: 'forward', srcAddress: '::1', srcPort: 5 }, { host: 'fd00::9', port: 22 })
    tracker.close(c)
    await audit.close()
    const [line] = await readLines(file)
    expect(line).toMatchObject({ process: { pid: 9, command: 'psql', uid: 1 }, src: '[::1]:5', dst: '[fd00::9]:22' })
    expect(line).not.toHaveProperty('remote')
    expect(calls).toBe(1)
  })

  it('appends DNS query lines and keeps earlier content', async () => {
    const file = path.join(dir, 'b.jsonl')
    await fs.writeFile(file, '{"old":true}\n', { mode: 0o600 })
    const audit = await AuditLog.open(file, { log: memoryLogger() })
    audit.recordDns({ time: new Date(0), client: '127.0.0.1:5353', qname: 'db.corp', qtype: 'A', route: 'cache', rcode: 'NOERROR', ms: 0.2 })
    audit.recordDns({ client: '127.0.0.1:5354', qname: 'x.corp', qtype: 'AAAA', route: 'tunnel', rcode: 'NXDOMAIN', ms: 12 })
    await audit.close()
    const lines = await readLines(file)
    expect(lines[0]).toEqual({ old: true })
    expect(lines[1]).toEqual({ type: 'dns', time: '1970-01-01T00:00:00.000Z', client: '127.0.0.1:5353', qname: 'db.corp', qtype: 'A', route: 'cache', rcode: 'NOERROR', ms: 0.2 })
    expect(lines[2]).toMatchObject({ type: 'dns', qname: 'x.corp', route: 'tunnel' })
    expect(Date.now() - Date.parse(lines[2].time as string)).toBeLessThan(5000)
  })

  it('tightens an existing world-readable file of ours to 0600 and says so', async () => {
    const file = path.join(dir, 'c.jsonl')
    await fs.writeFile(file, '')
    await fs.chmod(file, 0o644)
    const log = memoryLogger()
    const audit = await AuditLog.open(file, { log })
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    expect(log.lines.join('\n')).toMatch(/changed it to mode 0600/)
    await audit.close()
  })

  // Only root can make a file owned by another user; the unit project runs as root in CI.
  it.skipIf(process.getuid?.() !== 0)('refuses a file owned by someone else, world-readable or 0600, and writes nothing', async () => {
    for (const mode of [0o644, 0o600]) {
      const file = path.join(dir, `d${mode.toString(8)}.jsonl`)
      await fs.writeFile(file, '')
      await fs.chmod(file, mode)
      await fs.chown(file, 65534, 65534)
      await expect(AuditLog.open(file, { log: memoryLogger() })).rejects.toMatchObject({ code: 'AUDIT_LOG', message: /owned by uid 65534/ })
      expect((await fs.stat(file)).mode & 0o777).toBe(mode)
      expect(await fs.readFile(file, 'utf8')).toBe('')
    }
  })

  it('refuses a symlink: the target is neither appended to nor chmod-ed', async () => {
    const victim = path.join(dir, 'victim')
    await fs.writeFile(victim, 'precious\n', { mode: 0o644 })
    await fs.chmod(victim, 0o644)
    const file = path.join(dir, 'link.jsonl')
    await fs.symlink(victim, file)
    await expect(AuditLog.open(file, { log: memoryLogger() })).rejects.toMatchObject({ code: 'AUDIT_LOG', message: /symbolic link/ })
    expect(await fs.readFile(victim, 'utf8')).toBe('precious\n')
    expect((await fs.stat(victim)).mode & 0o777).toBe(0o644)
  })

  it('refuses a file with a second hard link', async () => {
    const other = path.join(dir, 'other')
    await fs.writeFile(other, '', { mode: 0o600 })
    const file = path.join(dir, 'hard.jsonl')
    await fs.link(other, file)
    await expect(AuditLog.open(file, { log: memoryLogger() })).rejects.toMatchObject({ code: 'AUDIT_LOG', message: /hard links/ })
  })

  it('refuses a FIFO at once instead of blocking on it', async () => {
    const fifo = path.join(dir, 'fifo.jsonl')
    const { execFileSync } = await import('node:child_process')
    execFileSync('mkfifo', ['-m', '600', fifo])
    const opened = AuditLog.open(fifo, { log: memoryLogger() })
    const outcome = await Promise.race([
      opened.then(() => 'opened', (e: { code?: string }) => e.code),
      new Promise((r) => setTimeout(() => r('blocked'), 2000)),
    ])
    // A blocked open would hold a thread-pool thread until a reader comes: be that reader.
    if (outcome === 'blocked') {
      const fd = (await import('node:fs')).openSync(fifo, 'r')
      await opened.then((a) => a.close(), () => {})
      ;(await import('node:fs')).closeSync(fd)
    }
    expect(outcome).toBe('AUDIT_LOG')
  })

  it('fails to open with AUDIT_LOG when the directory is missing or the path is a directory', async () => {
    await expect(AuditLog.open(path.join(dir, 'no/such/file'), { log: memoryLogger() })).rejects.toMatchObject({ code: 'AUDIT_LOG' })
    await expect(AuditLog.open(dir, { log: memoryLogger() })).rejects.toMatchObject({ code: 'AUDIT_LOG' })
  })

  it('never throws into the data path and logs write errors once', async () => {
    const file = path.join(dir, 'e.jsonl')
    const log = memoryLogger()
    const audit = await AuditLog.open(file, { log, remoteFor: () => { throw new Error('bug') } })
    // Break the file handle underneath: every write now fails with EBADF.
    await (audit as unknown as { fh: { close(): Promise<void> } }).fh.close()
    const tracker = new ConnTracker()
    tracker.observe(audit)
    for (let i = 0; i < 3; i++) {
      const c = tracker.open({ id: tracker.nextId(), frontEnd: 'http', srcAddress: '192.0.2.1', srcPort: i }, { host: 'h', port: 80 })
      expect(() => tracker.close(c)).not.toThrow()
    }
    await audit.close()
    expect(log.lines.filter((l) => l.includes('write failed'))).toHaveLength(1)
  })

  it('keeps lines whole and separate under many concurrent writers', async () => {
    const file = path.join(dir, 'f.jsonl')
    const a = await AuditLog.open(file, { log: memoryLogger() })
    const b = await AuditLog.open(file, { log: memoryLogger() })
    const big = 'q'.repeat(3000)
    for (let i = 0; i < 200; i++) {
      ;(i % 2 ? a : b).recordDns({ client: `c${i}`, qname: big, qtype: 'A', route: 'local', rcode: 'NOERROR', ms: i })
    }
    await Promise.all([a.close(), b.close()])
    const lines = await readLines(file)
    expect(lines).toHaveLength(200)
    expect(new Set(lines.map((l) => l.ms)).size).toBe(200)
  })
})
