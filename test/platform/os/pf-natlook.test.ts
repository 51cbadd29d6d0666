import { describe, expect, it } from 'vitest'
import {
  addressBytes,
  diocNatlook,
  iowr,
  NATLOOK_LAYOUT,
  natlookLayout,
  packNatLook,
  unpackNatLook,
} from '../../../src/platform/os/pf-natlook'

/**
 * Fixtures written by hand from xnu bsd/net/pfvar.h (struct pfioc_natlook, line 1839), NOT
 * from the code under test: 4 × struct pf_addr (16 bytes) at 0/16/32/48, 4 × union
 * pf_state_xport (4 bytes; `port` first, network order) at 64/68/72/76, then af, proto,
 * proto_variant, direction (u8 each) at 80..83; sizeof 84.
 */
const hex = (...parts: string[]): Buffer => Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex')
const Z16 = '00'.repeat(16)

// 192.168.1.10:51000 → (redirected to) 127.0.0.1:4000, tcp, PF_OUT
const QUERY_V4 = hex(
  'c0a8010a 000000000000000000000000', // saddr  192.168.1.10
  '7f000001 000000000000000000000000', // daddr  127.0.0.1
  Z16, Z16, //                            rsaddr, rdaddr: filled in by the kernel
  'c7380000 0fa00000 00000000 00000000', // sxport 51000, dxport 4000, rsxport, rdxport
  '02 06 00 02', //                       af=AF_INET proto=TCP proto_variant=0 direction=PF_OUT
)

// The same buffer as the kernel returns it: rsaddr:rsxport = saddr:sxport, rdaddr:rdxport =
// the original destination 10.0.1.20:3306 (pf_ioctl.c, direction != PF_IN branch).
const ANSWER_V4 = hex(
  'c0a8010a 000000000000000000000000',
  '7f000001 000000000000000000000000',
  'c0a8010a 000000000000000000000000', // rsaddr = saddr
  '0a000114 000000000000000000000000', // rdaddr = 10.0.1.20
  'c7380000 0fa00000 c7380000 0cea0000', // rdxport = 3306
  '02 06 00 02',
)

// [fd00::10]:40000 → [::1]:4000, tcp; original destination [fd99::5]:443. AF_INET6 = 30 (0x1e).
const ANSWER_V6 = hex(
  'fd000000000000000000000000000010',
  '00000000000000000000000000000001',
  'fd000000000000000000000000000010',
  'fd990000000000000000000000000005',
  '9c400000 0fa00000 9c400000 01bb0000',
  '1e 06 00 02',
)

describe('struct pfioc_natlook layout (xnu pfvar.h)', () => {
  for (const arch of ['x64', 'arm64'] as const) {
    it(`${arch}: offsets and size from the header`, () => {
      expect(NATLOOK_LAYOUT[arch]).toEqual({
        size: 84, saddr: 0, daddr: 16, rsaddr: 32, rdaddr: 48,
        sxport: 64, dxport: 68, rsxport: 72, rdxport: 76,
        af: 80, proto: 81, protoVariant: 82, direction: 83,
      })
      // _IOWR('D', 23, 84 bytes) = IOC_INOUT | 84 << 16 | 'D' << 8 | 23
      expect(diocNatlook(arch)).toBe(0xc0544417)
    })
  }

  it('_IOWR matches values known from the macOS headers', () => {
    // DIOCSTOPREF _IOWR('D', 9, struct pfioc_remove_token {u64,u64}) as pfctl calls it: 0xC0104409
    expect(iowr('D', 9, 16)).toBe(0xc0104409)
    // the BSD layout with u_int16_t ports (76 bytes) gives a different request: never use it
    expect(iowr('D', 23, 76)).toBe(0xc04c4417)
  })

  it('refuses unknown archs rather than guessing', () => {
    expect(() => natlookLayout('ia32')).toThrow(expect.objectContaining({ code: 'FW_UNSUPPORTED' }))
  })
})

describe('packNatLook / unpackNatLook', () => {
  for (const arch of ['x64', 'arm64']) {
    it(`${arch}: IPv4 query is byte-exact`, () => {
      const buf = packNatLook({ src: { host: '192.168.1.10', port: 51000 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp' }, arch)
      expect(buf.toString('hex')).toBe(QUERY_V4.toString('hex'))
    })

    it(`${arch}: reads the original destination the kernel wrote`, () => {
      expect(unpackNatLook(ANSWER_V4, arch)).toEqual({ host: '10.0.1.20', port: 3306, family: 4 })
      expect(unpackNatLook(ANSWER_V6, arch)).toEqual({ host: 'fd99::5', port: 443, family: 6 })
    })
  }

  it('IPv6 query: af 30, addresses in full, ports in network order', () => {
    const buf = packNatLook({ src: { host: 'fd00::10', port: 40000 }, dst: { host: '::1', port: 4000 }, proto: 'tcp' }, 'arm64')
    expect(buf.subarray(0, 32).toString('hex')).toBe(ANSWER_V6.subarray(0, 32).toString('hex'))
    expect(buf.subarray(32, 64).equals(Buffer.alloc(32))).toBe(true)
    expect(buf.subarray(64, 72).toString('hex')).toBe('9c4000000fa00000')
    expect([...buf.subarray(80)]).toEqual([30, 6, 0, 2])
  })

  it('udp sets proto 17; IPv4-mapped client addresses are asked as IPv4', () => {
    const buf = packNatLook({ src: { host: '::ffff:10.1.2.3', port: 5353 }, dst: { host: '127.0.0.1', port: 4053 }, proto: 'udp' }, 'x64')
    expect(buf.subarray(0, 4).toString('hex')).toBe('0a010203')
    expect(buf[80]).toBe(2)
    expect(buf[81]).toBe(17)
  })

  it('refuses what the kernel would answer EINVAL to, and garbage', () => {
    const q = { src: { host: '10.0.0.1', port: 1 }, dst: { host: '127.0.0.1', port: 4000 }, proto: 'tcp' as const }
    const bad = (over: object): unknown => {
      try {
        packNatLook({ ...q, ...over }, 'x64')
      } catch (e) {
        return e
      }
      return undefined
    }
    expect(bad({ src: { host: '10.0.0.1', port: 0 } })).toMatchObject({ code: 'ORIGINAL_DST' })
    expect(bad({ dst: { host: '::1', port: 4000 } })).toMatchObject({ code: 'ORIGINAL_DST', message: expect.stringMatching(/different families/) })
    expect(bad({ src: { host: 'example.com', port: 1 } })).toMatchObject({ code: 'ORIGINAL_DST' })
    expect(bad({ src: { host: 'fe80::1%en0', port: 1 } })).toMatchObject({ code: 'ORIGINAL_DST' })
    expect(() => unpackNatLook(Buffer.alloc(83), 'x64')).toThrow(/short buffer/)
    const weird = Buffer.from(ANSWER_V4)
    weird[80] = 10 // Linux's AF_INET6 is not Darwin's
    expect(() => unpackNatLook(weird, 'x64')).toThrow(/address family 10/)
  })

  it('addressBytes gives network-order bytes', () => {
    expect(addressBytes('10.0.1.20')).toEqual({ family: 4, bytes: [10, 0, 1, 20] })
    expect(addressBytes('::1').bytes).toEqual([...Array(15).fill(0), 1])
  })
})
