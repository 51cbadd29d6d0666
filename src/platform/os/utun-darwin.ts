/**
 * macOS utun devices for `--method tun`. NOT YET RUN ON A REAL MAC: the struct layouts, the
 * call sequence and the 4-byte header handling are unit-tested against the XNU sources cited
 * below (apple-oss-distributions/xnu at xnu-11417.101.15), through injectable UtunSyscalls.
 *
 * A utun interface exists as long as the kernel-control socket that created it is open: it is
 * created by connect() and destroyed (with every route through it, xnu bsd/net/dlil_subr.c:651
 * if_rtproto_del) when the last descriptor closes — also when the process is killed. Opening
 * needs root: the control registers with CTL_FLAG_PRIVILEGED (bsd/net/if_utun.c:1460).
 *
 * Sequence (as wireguard-go tun_darwin.go and holepunchto/utun do it):
 *   fd = socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)
 *   ioctl(fd, CTLIOCGINFO, &ctl_info{ctl_name = "com.apple.net.utun_control"})  → ctl_id
 *   connect(fd, &sockaddr_ctl{sc_id = ctl_id, sc_unit = 0}, 32)   — unit 0: the kernel picks
 *   getsockopt(fd, SYSPROTO_CONTROL, UTUN_OPT_IFNAME, buf, &len)   → "utunN" (N = unit - 1,
 *     bsd/net/if_utun.c:1674), len includes the NUL (if_utun.c:2414-2423)
 *
 * Packets on the socket carry a 4-byte protocol family (AF_INET 2 / AF_INET6 30) in NETWORK
 * byte order before the IP header, both ways (if_utun.c:2059-2064 on send, 2668-2672 on
 * output to us): utunStrip / utunFrame, and wrapUtunDevice on top of a raw device.
 */
import * as os from 'node:os'
import { TunnelError } from '../../errors'
import { packetDeviceFromFd, type PacketDevice } from './tun-device'

// bsd/sys/socket.h:425 AF_SYSTEM 32, :536 PF_SYSTEM AF_SYSTEM, :114 SOCK_DGRAM 2,
// :391 AF_INET 2, :422 AF_INET6 30.
export const AF_SYSTEM = 32
export const PF_SYSTEM = AF_SYSTEM
export const SOCK_DGRAM = 2
export const DARWIN_AF_INET = 2
export const DARWIN_AF_INET6 = 30
// bsd/sys/sys_domain.h:45 SYSPROTO_CONTROL 2, :46 AF_SYS_CONTROL 2.
export const SYSPROTO_CONTROL = 2
export const AF_SYS_CONTROL = 2
// bsd/net/if_utun.h:51, :57.
export const UTUN_CONTROL_NAME = 'com.apple.net.utun_control'
export const UTUN_OPT_IFNAME = 2
/** bsd/sys/kern_control.h:105. */
export const MAX_KCTL_NAME = 96
/** struct ctl_info (kern_control.h:118-121): u_int32_t ctl_id; char ctl_name[96] → 100 bytes. */
export const CTL_INFO_SIZE = 4 + MAX_KCTL_NAME
/**
 * struct sockaddr_ctl (kern_control.h:141-148): u_char sc_len; u_char sc_family;
 * u_int16_t ss_sysaddr; u_int32_t sc_id; u_int32_t sc_unit; u_int32_t sc_reserved[5] → 32 bytes,
 * no padding (every field at its natural alignment).
 */
export const SOCKADDR_CTL_SIZE = 32
/**
 * CTLIOCGINFO = _IOWR('N', 3, struct ctl_info) (kern_control.h:97), with bsd/sys/ioccom.h:87-97:
 * IOC_INOUT 0xc0000000 | (sizeof & 0x1fff) << 16 | 'N' << 8 | 3 = 0xc0644e03, on x86_64 and arm64.
 */
export const CTLIOCGINFO = ioctlIowr('N', 3, CTL_INFO_SIZE)
/** IFNAMSIZ on Darwin (net/if.h): the buffer UTUN_OPT_IFNAME fills. */
const IFNAMSIZ = 16
/** Length of the protocol-family header on every utun packet. */
export const UTUN_HEADER = 4

/** _IOWR of bsd/sys/ioccom.h (exported for the test that pins CTLIOCGINFO). */
export function ioctlIowr(group: string, num: number, size: number): number {
  return (0xc0000000 | ((size & 0x1fff) << 16) | (group.charCodeAt(0) << 8) | num) >>> 0
}

type Endian = 'LE' | 'BE'

/** struct ctl_info asking for `name` (ctl_id 0, filled in by the kernel). */
export function packCtlInfo(name: string = UTUN_CONTROL_NAME): Buffer {
  if (Buffer.byteLength(name) >= MAX_KCTL_NAME) throw new TunnelError('INTERNAL', `kernel control name too long: ${name}`)
  const b = Buffer.alloc(CTL_INFO_SIZE)
  b.write(name, 4, 'ascii')
  return b
}

/** ctl_id from a ctl_info the kernel filled (host byte order). */
export function ctlIdOf(info: Buffer, endian: Endian = os.endianness()): number {
  return endian === 'LE' ? info.readUInt32LE(0) : info.readUInt32BE(0)
}

/** struct sockaddr_ctl for connect(): AF_SYSTEM / AF_SYS_CONTROL, host byte order fields. */
export function packSockaddrCtl(ctlId: number, unit = 0, endian: Endian = os.endianness()): Buffer {
  const b = Buffer.alloc(SOCKADDR_CTL_SIZE)
  b[0] = SOCKADDR_CTL_SIZE
  b[1] = AF_SYSTEM
  if (endian === 'LE') {
    b.writeUInt16LE(AF_SYS_CONTROL, 2)
    b.writeUInt32LE(ctlId, 4)
    b.writeUInt32LE(unit, 8)
  } else {
    b.writeUInt16BE(AF_SYS_CONTROL, 2)
    b.writeUInt32BE(ctlId, 4)
    b.writeUInt32BE(unit, 8)
  }
  return b
}

/** The name UTUN_OPT_IFNAME returned: `len` bytes including the NUL; must look like utunN. */
export function parseUtunName(buf: Buffer, len: number): string {
  const raw = buf.subarray(0, Math.max(0, Math.min(len, buf.length)))
  const nul = raw.indexOf(0)
  const name = raw.subarray(0, nul < 0 ? raw.length : nul).toString('ascii')
  if (!/^utun\d{1,5}$/.test(name)) throw new TunnelError('FW_APPLY', `utun: unexpected interface name "${name}"`)
  return name
}

/** The system calls utunOpen needs; each returns -1 and sets errno() on failure. */
export interface UtunSyscalls {
  socket(domain: number, type: number, protocol: number): number
  ioctl(fd: number, request: number, arg: Buffer): number
  connect(fd: number, addr: Buffer, len: number): number
  /** `len` is a 4-byte socklen_t in/out buffer. */
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number
  close(fd: number): number
  errno(): number
}

function errnoName(n: number): string {
  return Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`
}

/** Darwin EPERM / EACCES (same numbers as Linux). */
const EPERM = 1
const EACCES = 13

/**
 * Creates a utun interface: returns the socket (which IS the interface: close it and the
 * interface goes away) and its name. Any failure closes the socket.
 */
export function utunOpen(sys: UtunSyscalls, endian: Endian = os.endianness()): { fd: number; name: string } {
  const fd = sys.socket(PF_SYSTEM, SOCK_DGRAM, SYSPROTO_CONTROL)
  if (fd < 0) throw new TunnelError('FW_UNSUPPORTED', `utun: socket(PF_SYSTEM): ${errnoName(sys.errno())}`)
  const fail = (what: string): never => {
    const e = sys.errno()
    sys.close(fd)
    throw new TunnelError('FW_UNSUPPORTED', `utun: ${what}: ${errnoName(e)}`, {
      hint: e === EPERM || e === EACCES ? 'creating a utun interface needs root on macOS: run the tunnel with sudo for --method tun' : undefined,
    })
  }
  const info = packCtlInfo()
  if (sys.ioctl(fd, CTLIOCGINFO, info) !== 0) fail('ioctl(CTLIOCGINFO)')
  const addr = packSockaddrCtl(ctlIdOf(info, endian), 0, endian)
  if (sys.connect(fd, addr, SOCKADDR_CTL_SIZE) !== 0) fail('connect')
  const name = Buffer.alloc(IFNAMSIZ)
  const len = Buffer.alloc(4)
  if (endian === 'LE') len.writeUInt32LE(IFNAMSIZ)
  else len.writeUInt32BE(IFNAMSIZ)
  if (sys.getsockopt(fd, SYSPROTO_CONTROL, UTUN_OPT_IFNAME, name, len) !== 0) fail('getsockopt(UTUN_OPT_IFNAME)')
  try {
    return { fd, name: parseUtunName(name, endian === 'LE' ? len.readUInt32LE(0) : len.readUInt32BE(0)) }
  } catch (e) {
    sys.close(fd)
    throw e
  }
}

/**
 * The IP packet inside a utun frame, or undefined for a frame we do not carry (shorter than
 * an IP header, a family other than AF_INET/AF_INET6, or one that disagrees with the IP
 * version nibble).
 */
export function utunStrip(frame: Buffer): Buffer | undefined {
  if (frame.length <= UTUN_HEADER) return undefined
  const af = frame.readUInt32BE(0)
  const version = frame[UTUN_HEADER] >> 4
  const len = frame.length - UTUN_HEADER
  // A frame shorter than the fixed IP header cannot be a packet: dropped here, counted.
  if (af === DARWIN_AF_INET && version === 4 && len >= 20) return frame.subarray(UTUN_HEADER)
  if (af === DARWIN_AF_INET6 && version === 6 && len >= 40) return frame.subarray(UTUN_HEADER)
  return undefined
}

/** A utun frame for an IP packet: the family from its version nibble; undefined if neither 4 nor 6. */
export function utunFrame(packet: Buffer): Buffer | undefined {
  if (packet.length === 0) return undefined
  const version = packet[0] >> 4
  const af = version === 4 ? DARWIN_AF_INET : version === 6 ? DARWIN_AF_INET6 : 0
  if (af === 0) return undefined
  const out = Buffer.allocUnsafe(UTUN_HEADER + packet.length)
  out.writeUInt32BE(af, 0)
  packet.copy(out, UTUN_HEADER)
  return out
}

/** A device whose packets are utun frames, seen as one of plain IP packets. */
export interface UtunAdapter extends PacketDevice {
  /** Frames dropped in either direction because they were not IPv4/IPv6. */
  malformed(): number
}

/**
 * Adapts a raw utun device (one frame per read/write, header included) to the engine's
 * PacketDevice: strips the header on read, prepends it on write. The MTU is the interface's
 * (the header is not part of it).
 */
export function wrapUtunDevice(raw: PacketDevice): UtunAdapter {
  let bad = 0
  return {
    name: raw.name,
    mtu: raw.mtu,
    onPacket(cb) {
      raw.onPacket((frame) => {
        const p = utunStrip(frame)
        if (p) cb(p)
        else bad++
      })
    },
    write(packet) {
      const f = utunFrame(packet)
      if (f) raw.write(f)
      else bad++
    },
    close: () => raw.close(),
    malformed: () => bad,
  }
}

let darwinSys: UtunSyscalls | undefined

/** libSystem's calls through koffi; FW_UNSUPPORTED anywhere but macOS. */
export function darwinUtunSyscalls(platform: NodeJS.Platform = process.platform): UtunSyscalls {
  if (platform !== 'darwin') {
    throw new TunnelError('FW_UNSUPPORTED', `utun devices exist on macOS only (platform ${platform})`, {
      hint: 'on Linux, --method tun uses /dev/net/tun (tun-device.ts)',
    })
  }
  if (darwinSys) return darwinSys
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const koffi = require('koffi') as typeof import('koffi')
  const lib = koffi.load('/usr/lib/libSystem.B.dylib')
  const socket = lib.func('int socket(int domain, int type, int protocol)') as unknown as (d: number, t: number, p: number) => number
  // ioctl is variadic: on Apple arm64 variadic arguments go on the stack (see pf-device.ts).
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)') as unknown as
    (fd: number, req: number, t: string, arg: Buffer) => number
  const connect = lib.func('int connect(int fd, void *addr, uint32_t len)') as unknown as (fd: number, a: Buffer, l: number) => number
  const getsockopt = lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)') as unknown as
    (fd: number, l: number, n: number, v: Buffer, len: Buffer) => number
  const close = lib.func('int close(int fd)') as unknown as (fd: number) => number
  darwinSys = {
    socket: (d, t, p) => socket(d, t, p),
    ioctl: (fd, req, arg) => ioctl(fd, req, 'void *', arg),
    connect: (fd, a, l) => connect(fd, a, l),
    getsockopt: (fd, l, n, v, len) => getsockopt(fd, l, n, v, len),
    close: (fd) => close(fd),
    errno: () => koffi.errno(),
  }
  return darwinSys
}

/**
 * Creates a utun interface and opens it for packet I/O (macOS, as root). The fd is read through
 * the same libuv handle as on Linux (tun-device.ts): a kernel-control socket is SOCK_DGRAM, so
 * one read() is one frame. Closing the device destroys the interface and its routes.
 */
export function openUtunDevice(mtu: number, sys: UtunSyscalls = darwinUtunSyscalls()): UtunAdapter {
  const { fd, name } = utunOpen(sys)
  return wrapUtunDevice(packetDeviceFromFd(name, fd, mtu))
}
