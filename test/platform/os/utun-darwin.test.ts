import { describe, expect, it } from 'vitest'
import type { PacketDevice } from '../../../src/platform/os/tun-device'
import {
  CTLIOCGINFO, CTL_INFO_SIZE, darwinUtunSyscalls, ioctlIowr, packCtlInfo, packSockaddrCtl, parseUtunName,
  SOCKADDR_CTL_SIZE, utunFrame, utunOpen, utunStrip, wrapUtunDevice, type UtunSyscalls,
} from '../../../src/platform/os/utun-darwin'

/** Behaves like XNU's kern_control + utun for the four calls (errno on misuse). */
class FakeKernel implements UtunSyscalls {
  calls: string[] = []
  closed: number[] = []
  err = 0
  constructor(private readonly opts: { failConnect?: number; unit?: number } = {}) {}
  socket(d: number, t: number, p: number): number {
    this.calls.push(`socket ${d} ${t} ${p}`)
    return 9
  }
  ioctl(fd: number, req: number, arg: Buffer): number {
    this.calls.push(`ioctl ${fd} ${req.toString(16)}`)
    if (req !== 0xc0644e03 || arg.length !== 100) return this.fail(22)
    if (arg.subarray(4, arg.indexOf(0, 4)).toString() !== 'com.apple.net.utun_control') return this.fail(2)
    arg.writeUInt32LE(0x1234, 0)
    return 0
  }
  connect(fd: number, a: Buffer, len: number): number {
    this.calls.push(`connect ${fd} ${a.toString('hex')} ${len}`)
    if (this.opts.failConnect) return this.fail(this.opts.failConnect)
    return 0
  }
  getsockopt(fd: number, level: number, name: number, v: Buffer, len: Buffer): number {
    this.calls.push(`getsockopt ${fd} ${level} ${name} ${len.readUInt32LE(0)}`)
    const n = v.write(`utun${(this.opts.unit ?? 8) - 1}\0`)
    len.writeUInt32LE(n)
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

describe('utun structs and constants (xnu headers)', () => {
  it('CTLIOCGINFO = _IOWR(N, 3, struct ctl_info) = 0xc0644e03; ctl_info 100 bytes, sockaddr_ctl 32', () => {
    expect(CTLIOCGINFO).toBe(0xc0644e03)
    expect(CTL_INFO_SIZE).toBe(100)
    expect(SOCKADDR_CTL_SIZE).toBe(32)
    // DIOCNATLOOK = _IOWR('D', 23, struct pfioc_natlook) on 64-bit (84 bytes), pinned elsewhere
    expect(ioctlIowr('D', 23, 84)).toBe(0xc0544417)
  })

  it('ctl_info: id 0, NUL-terminated name at offset 4', () => {
    const b = packCtlInfo()
    expect(b.readUInt32LE(0)).toBe(0)
    expect(b.subarray(4, 31).toString()).toBe('com.apple.net.utun_control\0')
    expect(b.subarray(31).every((x) => x === 0)).toBe(true)
    expect(() => packCtlInfo('x'.repeat(96))).toThrow()
  })

  it('sockaddr_ctl: len 32, AF_SYSTEM 32, AF_SYS_CONTROL 2, id, unit, zero reserved (LE and BE)', () => {
    expect(packSockaddrCtl(0x01020304, 0, 'LE').toString('hex')).toBe('20200200' + '04030201' + '00000000' + '00'.repeat(20))
    expect(packSockaddrCtl(0x01020304, 5, 'BE').toString('hex')).toBe('20200002' + '01020304' + '00000005' + '00'.repeat(20))
  })

  it('interface names: utunN with the NUL counted in len; anything else refused', () => {
    expect(parseUtunName(Buffer.from('utun7\0\0\0'), 6)).toBe('utun7')
    expect(parseUtunName(Buffer.from('utun12'), 6)).toBe('utun12')
    expect(() => parseUtunName(Buffer.from('en0\0'), 4)).toThrow(/unexpected/)
    expect(() => parseUtunName(Buffer.from('utun1;x\0'), 8)).toThrow()
  })
})

describe('utunOpen', () => {
  it('socket → CTLIOCGINFO → connect(sc_unit 0) → UTUN_OPT_IFNAME', () => {
    const k = new FakeKernel({ unit: 8 })
    expect(utunOpen(k, 'LE')).toEqual({ fd: 9, name: 'utun7' })
    expect(k.calls).toEqual([
      'socket 32 2 2',
      'ioctl 9 c0644e03',
      `connect 9 20200200${'34120000'}00000000${'00'.repeat(20)} 32`,
      'getsockopt 9 2 2 16',
    ])
    expect(k.closed).toEqual([])
  })

  it('closes the socket on failure; EPERM says root is needed', () => {
    const k = new FakeKernel({ failConnect: 1 })
    expect(() => utunOpen(k, 'LE')).toThrow(expect.objectContaining({ code: 'FW_UNSUPPORTED', hint: expect.stringMatching(/root/) }))
    expect(k.closed).toEqual([9])
  })

  it('the real bindings exist on darwin only', () => {
    expect(() => darwinUtunSyscalls('linux')).toThrow(expect.objectContaining({ code: 'FW_UNSUPPORTED' }))
  })
})

const ip4 = Buffer.from('4500001c0000000040110000c0a80001c0a80002' + '00350035000800', 'hex')
const ip6 = Buffer.concat([Buffer.from([0x60, 0, 0, 0, 0, 0, 17, 64]), Buffer.alloc(32)])

describe('utun frames', () => {
  it('prepends AF_INET 2 / AF_INET6 30 in network byte order', () => {
    expect(utunFrame(ip4)?.subarray(0, 4).toString('hex')).toBe('00000002')
    expect(utunFrame(ip6)?.subarray(0, 4).toString('hex')).toBe('0000001e')
    expect(utunFrame(ip4)?.subarray(4)).toEqual(ip4)
    expect(utunFrame(Buffer.from([0x50, 0]))).toBeUndefined()
    expect(utunFrame(Buffer.alloc(0))).toBeUndefined()
  })

  it('strips the header; refuses short frames, other families, and a family/version mismatch', () => {
    expect(utunStrip(utunFrame(ip4)!)).toEqual(ip4)
    expect(utunStrip(utunFrame(ip6)!)).toEqual(ip6)
    expect(utunStrip(Buffer.from('00000002', 'hex'))).toBeUndefined()
    expect(utunStrip(Buffer.concat([Buffer.from('0000001e', 'hex'), ip4]))).toBeUndefined()
    // host byte order (little-endian 2) is not what the kernel sends
    expect(utunStrip(Buffer.concat([Buffer.from('02000000', 'hex'), ip4]))).toBeUndefined()
  })

  it('wrapUtunDevice: the engine sees bare IP packets both ways', async () => {
    const written: Buffer[] = []
    let deliver: (b: Buffer) => void = () => {}
    let closed = false
    const raw: PacketDevice = {
      name: 'utun3', mtu: 65532,
      onPacket: (cb) => { deliver = cb },
      write: (b) => { written.push(b) },
      close: async () => { closed = true },
    }
    const dev = wrapUtunDevice(raw)
    const got: Buffer[] = []
    dev.onPacket((p) => got.push(p))
    deliver(utunFrame(ip6)!)
    deliver(Buffer.from('0000000245', 'hex'))
    dev.write(ip4)
    dev.write(Buffer.from([0x10]))
    expect(got).toEqual([ip6])
    expect(written.map((b) => b.toString('hex'))).toEqual(['00000002' + ip4.toString('hex')])
    expect(dev.malformed()).toBe(2)
    expect([dev.name, dev.mtu]).toEqual(['utun3', 65532])
    await dev.close()
    expect(closed).toBe(true)
  })
})
