import * as net from 'node:net'
import { describe, expect, it } from 'vitest'
import { getOriginalDst, parseSockaddr } from '../../../src/platform/os/original-dst'

describe('parseSockaddr', () => {
  it('sockaddr_in', () => {
    const b = Buffer.alloc(28)
    b.writeUInt16LE(2, 0)
    b.writeUInt16BE(8080, 2)
    Buffer.from([10, 99, 0, 5]).copy(b, 4)
    expect(parseSockaddr(b)).toEqual({ host: '10.99.0.5', port: 8080, family: 4 })
  })

  it('sockaddr_in6, compressed', () => {
    const b = Buffer.alloc(28)
    b.writeUInt16LE(10, 0)
    b.writeUInt16BE(443, 2)
    b.writeUInt16BE(0xfd99, 8)
    b.writeUInt16BE(5, 22)
    expect(parseSockaddr(b)).toEqual({ host: 'fd99::5', port: 443, family: 6 })
  })

  it('anything else is an ORIGINAL_DST error', () => {
    expect(() => parseSockaddr(Buffer.alloc(28))).toThrow(/address family 0/)
  })
})

describe('getOriginalDst without a redirect', () => {
  it('a direct loopback connection has no NAT entry → ORIGINAL_DST with the errno', async () => {
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    const sock = await accepted
    try {
      let err: unknown
      try {
        getOriginalDst(sock)
      } catch (e) {
        err = e
      }
      // Without conntrack state the kernel answers ENOENT; a kernel without nf_conntrack loaded
      // answers ENOPROTOOPT. Either way: a typed error naming the errno, never a wrong address.
      expect(err).toMatchObject({ code: 'ORIGINAL_DST', message: expect.stringMatching(/SO_ORIGINAL_DST\): (ENOENT|ENOPROTOOPT)/) })
    } finally {
      client.destroy()
      sock.destroy()
      server.close()
    }
  })

  it('with the listener family given, the same answer without asking the socket its address', async () => {
    const server = net.createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    const sock = await accepted
    const attempt = (family?: 4 | 6): unknown => {
      try {
        return getOriginalDst(sock, family)
      } catch (e) {
        return e
      }
    }
    try {
      const plain = attempt()
      // twice with the hint: the query buffers are reused between calls
      for (const r of [attempt(4), attempt(4)]) {
        expect(r).toMatchObject({ code: 'ORIGINAL_DST' })
        expect((r as Error).message).toBe((plain as Error).message)
      }
    } finally {
      client.destroy()
      sock.destroy()
      server.close()
    }
  })
})
