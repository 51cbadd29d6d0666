import * as net from 'node:net'
import { describe, expect, it } from 'vitest'
import { darwinSyscalls, defaultNatLook, PfNatLooker, type PfSyscalls } from '../../../src/platform/os/pf-device'
import { pfOriginalDst } from '../../../src/platform/os/pf-original-dst'

/**
 * A stand-in for /dev/pf that behaves like pfioctl_ioc_natlook (xnu bsd/net/pf_ioctl.c): it
 * reads the request from the caller's buffer at the header's offsets, looks the connection up
 * in a state table, and writes rdaddr/rdxport + rsaddr/rsxport back — or fails with an errno.
 */
class FakePf implements PfSyscalls {
  readonly requests: number[] = []
  opens = 0
  closed: number[] = []
  private err = 0
  /** "saddr:sport>daddr:dport" (hex addresses as in the buffer) → original destination bytes. */
  readonly states = new Map<string, { addr: number[]; port: number }>()

  constructor(private readonly openResult = 7) {}

  open(path: string, flags: number): number {
    this.opens++
    expect([path, flags]).toEqual(['/dev/pf', 0])
    if (this.openResult < 0) this.err = 13
    return this.openResult
  }

  ioctl(fd: number, request: number, buf: Buffer): number {
    expect(fd).toBe(this.openResult)
    this.requests.push(request)
    if (buf.length !== 84 || buf[81] === 0 || buf.readUInt16BE(64) === 0 || buf.readUInt16BE(68) === 0) return this.fail(22)
    const key = `${buf.subarray(0, 16).toString('hex')}:${buf.readUInt16BE(64)}>${buf.subarray(16, 32).toString('hex')}:${buf.readUInt16BE(68)}`
    const st = this.states.get(key)
    if (!st) return this.fail(2)
    buf.fill(0, 48, 64)
    Buffer.from(st.addr).copy(buf, 48)
    buf.writeUInt16BE(st.port, 76)
    buf.subarray(0, 16).copy(buf, 32)
    buf.copy(buf, 72, 64, 68)
    return 0
  }

  close(fd: number): number {
    this.closed.push(fd)
    return 0
  }

  errno(): number {
    return this.err
  }

  private fail(e: number): number {
    this.err = e
    return -1
  }
}

const v4 = (s: string): string => Buffer.from(s.split('.').map(Number)).toString('hex') + '00'.repeat(12)

describe('PfNatLooker', () => {
  it('opens /dev/pf once (read-only), sends DIOCNATLOOK, returns the original destination', () => {
    const pf = new FakePf()
    pf.states.set(`${v4('192.168.1.10')}:51000>${v4('127.0.0.1')}:4000`, { addr: [10, 0, 1, 20], port: 3306 })
    pf.states.set(`${v4('192.168.1.10')}:51001>${v4('127.0.0.1')}:4000`, { addr: [10, 0, 1, 21], port: 22 })
    const looker = new PfNatLooker(pf, 'arm64')
    const q = (sport: number) => ({ src: { host: '192.168.1.10', port: sport }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp' as const })
    expect(looker.lookup(q(51000))).toEqual({ host: '10.0.1.20', port: 3306, family: 4 })
    expect(looker.lookup(q(51001))).toEqual({ host: '10.0.1.21', port: 22, family: 4 })
    expect(pf.opens).toBe(1)
    expect(pf.requests).toEqual([0xc0544417, 0xc0544417])
    looker.close()
    expect(pf.closed).toEqual([7])
  })

  it('maps errno to ORIGINAL_DST with the reason', () => {
    const pf = new FakePf()
    const looker = new PfNatLooker(pf, 'x64')
    const q = { src: { host: '10.9.9.9', port: 1234 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp' as const }
    expect(() => looker.lookup(q)).toThrow(expect.objectContaining({ code: 'ORIGINAL_DST', message: expect.stringMatching(/not redirected by pf/) }))
    const denied = new PfNatLooker(new FakePf(-1), 'x64')
    expect(() => denied.lookup(q)).toThrow(expect.objectContaining({ code: 'ORIGINAL_DST', message: 'open /dev/pf: EACCES' }))
  })

  it('reports unsupported off macOS, without loading anything', async () => {
    expect(() => darwinSyscalls('linux')).toThrow(expect.objectContaining({ code: 'FW_UNSUPPORTED' }))
    const lookup = defaultNatLook('linux')
    await expect(lookup({ src: { host: '10.0.0.1', port: 1 }, dst: { host: '127.0.0.1', port: 2 }, proto: 'tcp' }))
      .rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
  })
})

describe('pfOriginalDst', () => {
  it('asks with the accepted socket as the listener sees it (client = src, listener = dst)', async () => {
    const asked: unknown[] = []
    const lookup = pfOriginalDst({ natlook: async (q) => (asked.push(q), { host: '10.0.1.20', port: 3306, family: 4 }) })
    const server = net.createServer()
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as net.AddressInfo).port
    const client = net.connect(port, '127.0.0.1')
    await new Promise((r) => client.once('connect', r))
    try {
      const sock = await accepted
      expect(await lookup(sock)).toEqual({ host: '10.0.1.20', port: 3306, family: 4 })
      expect(asked).toEqual([{ src: { host: '127.0.0.1', port: client.localPort }, dst: { host: '127.0.0.1', port }, proto: 'tcp' }])
      sock.destroy()
    } finally {
      client.destroy()
      server.close()
    }
  })
})
