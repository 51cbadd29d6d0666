/**
 * macOS pf: the original destination of a redirected connection, asked from the kernel with
 * ioctl(/dev/pf, DIOCNATLOOK). Pure layout code only (pack / unpack a struct pfioc_natlook);
 * the ioctl itself lives in pf-device.ts and runs in the privileged helper (/dev/pf is
 * root-only, crw------- root:wheel).
 *
 * Layout source — apple-oss-distributions/xnu at e3723e1f17661b24996789d8afc084c0c3303b26
 * (tag xnu-11417.101.15), bsd/net/pfvar.h:
 *
 *   struct pf_addr { union { struct in_addr _v4addr; struct in6_addr _v6addr;
 *                            u_int8_t _addr8[16]; u_int16_t _addr16[8];
 *                            u_int32_t _addr32[4]; } pfa; };          (line 249: 16 bytes, align 4)
 *   union pf_state_xport { u_int16_t port; u_int16_t call_id; u_int32_t spi; };
 *                                                                      (line 931: 4 bytes, align 4)
 *   struct pfioc_natlook {                                             (line 1839)
 *       struct pf_addr saddr, daddr, rsaddr, rdaddr;                   offsets  0, 16, 32, 48
 *       union pf_state_xport sxport, dxport, rsxport, rdxport;          offsets 64, 68, 72, 76
 *       sa_family_t af; u_int8_t proto, proto_variant, direction;      offsets 80, 81, 82, 83
 *   };                                                                 sizeof = 84
 *   #define DIOCNATLOOK _IOWR('D', 23, struct pfioc_natlook)           (line 2162)
 *   enum { PF_INOUT, PF_IN, PF_OUT };                                  (line 173)
 * bsd/sys/_types/_sa_family_t.h: `typedef __uint8_t sa_family_t;` (BSD sockaddrs carry sa_len).
 * bsd/sys/ioccom.h: _IOC(inout, group, num, len) =
 *   inout | ((len & IOCPARM_MASK) << 16) | (group << 8) | num, IOC_INOUT = 0xc0000000,
 *   IOCPARM_MASK = 0x1fff.  → DIOCNATLOOK = 0xc0544417.
 *
 * x86_64 and arm64 are the same: the struct has no pointer, long or 64-bit member, its largest
 * alignment is 4 (u_int32_t in both unions), and both are little-endian. The table below still
 * has one entry per arch so a future difference has a place to go, and so an unknown arch
 * fails loudly instead of guessing.
 *
 * Pitfall: the ports are `union pf_state_xport` (4 bytes) ONLY on Apple. OpenBSD/FreeBSD use a
 * bare u_int16_t (struct size 76, request 0xc04c4417); code copied from there misplaces af,
 * proto and direction, and the kernel answers EINVAL or garbage. sshuttle's Darwin class
 * (sshuttle/sshuttle, sshuttle/methods/pf.py at aea940c5, `class Darwin`) declares the same
 * 84-byte layout with ctypes and computes DIOCNATLOOK from sizeof() the same way.
 *
 * Semantics (bsd/net/pf_ioctl.c, pfioctl_ioc_natlook): with direction PF_OUT the kernel looks
 * up the state whose lan side is daddr:dxport (our listener, the rdr target) and whose
 * external side is saddr:sxport (the client), and returns the pre-translation destination in
 * rdaddr:rdxport. It answers EINVAL when proto, saddr, daddr or (tcp/udp) a port is zero,
 * ENOENT when no state matches and E2BIG when more than one does.
 */
import ipaddr from 'ipaddr.js'
import { TunnelError } from '../../errors'

/** Byte offsets and size of struct pfioc_natlook. */
export interface NatLookLayout {
  readonly size: number
  readonly saddr: number
  readonly daddr: number
  readonly rsaddr: number
  readonly rdaddr: number
  readonly sxport: number
  readonly dxport: number
  readonly rsxport: number
  readonly rdxport: number
  readonly af: number
  readonly proto: number
  readonly protoVariant: number
  readonly direction: number
}

/** node's process.arch values of the Macs that exist. */
export type DarwinArch = 'x64' | 'arm64'

const XNU_LAYOUT: NatLookLayout = {
  size: 84,
  saddr: 0,
  daddr: 16,
  rsaddr: 32,
  rdaddr: 48,
  sxport: 64,
  dxport: 68,
  rsxport: 72,
  rdxport: 76,
  af: 80,
  proto: 81,
  protoVariant: 82,
  direction: 83,
}

/** struct pfioc_natlook per macOS arch (identical, see above). */
export const NATLOOK_LAYOUT: Readonly<Record<DarwinArch, NatLookLayout>> = { x64: XNU_LAYOUT, arm64: XNU_LAYOUT }

/** Darwin's values (AF_INET6 is 30 on Darwin, not Linux's 10). */
export const DARWIN_AF_INET = 2
export const DARWIN_AF_INET6 = 30
export const IPPROTO_TCP = 6
export const IPPROTO_UDP = 17
/** enum { PF_INOUT, PF_IN, PF_OUT } */
export const PF_OUT = 2

const IOC_INOUT = 0xc0000000
const IOCPARM_MASK = 0x1fff

/** _IOWR(group, num, len) of bsd/sys/ioccom.h, as an unsigned 32-bit number. */
export function iowr(group: string, num: number, len: number): number {
  return (IOC_INOUT | ((len & IOCPARM_MASK) << 16) | (group.charCodeAt(0) << 8) | num) >>> 0
}

/** The layout for an arch; FW_UNSUPPORTED for anything that is not a 64-bit Mac. */
export function natlookLayout(arch: string = process.arch): NatLookLayout {
  const l = (NATLOOK_LAYOUT as Record<string, NatLookLayout | undefined>)[arch]
  if (!l) throw new TunnelError('FW_UNSUPPORTED', `pf: no pfioc_natlook layout for arch ${arch}`)
  return l
}

/** DIOCNATLOOK for an arch: _IOWR('D', 23, struct pfioc_natlook) = 0xc0544417. */
export function diocNatlook(arch: string = process.arch): number {
  return iowr('D', 23, natlookLayout(arch).size)
}

/** One end of a connection: an IP literal and a port. */
export interface NatLookEndpoint {
  readonly host: string
  readonly port: number
}

/** What to look up: the connection as our listener sees it. */
export interface NatLookQuery {
  /** The client (the accepted socket's remote address and port). */
  readonly src: NatLookEndpoint
  /** The listener side (the accepted socket's local address and port): the rdr target. */
  readonly dst: NatLookEndpoint
  readonly proto: 'tcp' | 'udp'
}

/** The original destination. */
export interface NatLookAnswer {
  readonly host: string
  readonly port: number
  readonly family: 4 | 6
}

/** An IP literal as its family and 4 or 16 network-order bytes; `::ffff:a.b.c.d` counts as IPv4. */
export function addressBytes(host: string): { family: 4 | 6; bytes: number[] } {
  let a: ipaddr.IPv4 | ipaddr.IPv6
  try {
    if (!ipaddr.isValid(host) || host.includes('%')) throw new Error('not an IP')
    a = ipaddr.parse(host)
  } catch {
    throw new TunnelError('ORIGINAL_DST', `pf natlook: "${host}" is not an IP address`)
  }
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address()
  return { family: a.kind() === 'ipv4' ? 4 : 6, bytes: a.toByteArray() }
}

function checkPort(p: number, what: string): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) {
    // The kernel refuses a zero port with EINVAL; catch it here with a clearer message.
    throw new TunnelError('ORIGINAL_DST', `pf natlook: ${what} port ${p} out of range`)
  }
}

/** Builds the request buffer: saddr/sxport = client, daddr/dxport = listener, direction PF_OUT. */
export function packNatLook(q: NatLookQuery, arch: string = process.arch): Buffer {
  const l = natlookLayout(arch)
  const src = addressBytes(q.src.host)
  const dst = addressBytes(q.dst.host)
  if (src.family !== dst.family) {
    throw new TunnelError('ORIGINAL_DST', `pf natlook: ${q.src.host} and ${q.dst.host} are of different families`)
  }
  checkPort(q.src.port, 'source')
  checkPort(q.dst.port, 'destination')
  const buf = Buffer.alloc(l.size) // zeroed: rsaddr, rdaddr and the unused union bytes stay 0
  Buffer.from(src.bytes).copy(buf, l.saddr)
  Buffer.from(dst.bytes).copy(buf, l.daddr)
  // `port` is the union's first member, so it sits at the union's offset 0; its value is in
  // network byte order (the kernel compares it with the packet's header bytes).
  buf.writeUInt16BE(q.src.port, l.sxport)
  buf.writeUInt16BE(q.dst.port, l.dxport)
  buf[l.af] = src.family === 4 ? DARWIN_AF_INET : DARWIN_AF_INET6
  buf[l.proto] = q.proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP
  buf[l.protoVariant] = 0
  buf[l.direction] = PF_OUT
  return buf
}

/** Reads rdaddr:rdxport from a buffer the kernel filled in; the family comes from `af`. */
export function unpackNatLook(buf: Buffer, arch: string = process.arch): NatLookAnswer {
  const l = natlookLayout(arch)
  if (buf.length < l.size) throw new TunnelError('ORIGINAL_DST', `pf natlook: short buffer (${buf.length} < ${l.size})`)
  const af = buf[l.af]
  const port = buf.readUInt16BE(l.rdxport)
  if (af === DARWIN_AF_INET) {
    const host = ipaddr.fromByteArray([...buf.subarray(l.rdaddr, l.rdaddr + 4)]).toString()
    return { host, port, family: 4 }
  }
  if (af === DARWIN_AF_INET6) {
    // toString() gives the RFC 5952 compressed form ("fd99::5"), as SO_ORIGINAL_DST's parser does.
    const host = ipaddr.fromByteArray([...buf.subarray(l.rdaddr, l.rdaddr + 16)]).toString()
    return { host, port, family: 6 }
  }
  throw new TunnelError('ORIGINAL_DST', `pf natlook: unexpected address family ${af}`)
}
