/**
 * Opens an existing TUN interface (created by the helper, owned by our uid: see tun.ts) for
 * packet I/O: open /dev/net/tun, then ioctl(TUNSETIFF) with the device's name and
 * IFF_TUN | IFF_NO_PI, so every read() returns exactly one IP packet and every write() injects
 * exactly one. Attaching to a persistent device needs no root when its owner is our euid.
 *
 * I/O, measured in a network namespace (2-core VM, 128-byte packets, uid nobody):
 *  - reads through a libuv pipe handle on the fd (uv_pipe_open makes it non-blocking and
 *    polls it with epoll; libuv reads until EAGAIN, one read() = one packet = one 'data'
 *    chunk): ~120k packets/s received, against ~38k/s for fs.read() in the threadpool (one
 *    thread round trip per packet; a blocked read also pins a threadpool thread forever).
 *    libuv reads into 64 KiB buffers, so a packet of the largest MTU (65535) always fits;
 *  - writes with fs.writeSync, one write() per packet: ~280k packets/s. A TUN write never
 *    blocks (the kernel queues the packet in its backlog or drops it there), so there is no
 *    queue of ours: a failed write (EAGAIN, ENOBUFS, …) drops that packet and is counted.
 *    Stream writes are avoided on purpose: net.Socket coalesces queued chunks with writev(),
 *    which a TUN fd would take as ONE packet.
 * net.Socket cannot wrap the fd itself (a character device is not a pipe or socket to
 * guessHandleType), hence the Pipe handle from process.binding('pipe_wrap').
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import { TunnelError } from '../../errors'

/** One IP packet at a time, both ways (the agreed engine interface). */
export interface PacketDevice {
  readonly name: string
  readonly mtu: number
  /** One IP packet per call (IFF_NO_PI). */
  onPacket(cb: (packet: Buffer) => void): void
  /** Writes one IP packet; drops (and counts) when the device queue is full. */
  write(packet: Buffer): void
  close(): Promise<void>
}

/** Counters of a TUN device. */
export interface TunDeviceStats {
  readonly packetsIn: number
  readonly packetsOut: number
  readonly bytesIn: number
  readonly bytesOut: number
  /** Packets our writes could not hand to the kernel. */
  readonly dropped: number
}

export interface TunDevice extends PacketDevice {
  stats(): TunDeviceStats
  /** Called once if reading fails (the device was deleted under us); the device is closed then. */
  onError(cb: (err: Error) => void): void
}

export interface OpenTunOptions {
  /** MTU to report; default: the interface's own (/sys/class/net/NAME/mtu), else 1500. */
  mtu?: number
  /** The clone device; default /dev/net/tun (tests use a node of their own, mode 0666). */
  clonePath?: string
}

// linux/if_tun.h. TUNSETIFF = _IOW('T', 202, int): this value holds on x86, x86_64, arm and
// arm64 (not on mips, powerpc or sparc, whose _IOC layout differs).
const TUNSETIFF = 0x400454ca
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
/** struct ifreq: IFNAMSIZ (16) name + a 24-byte union on 64-bit; flags (short) at offset 16. */
const IFREQ_SIZE = 40
const IFNAMSIZ = 16

type Ioctl = (fd: number, req: number, type: string, arg: Buffer) => number
let libc: { ioctl: Ioctl; errno: () => number } | undefined

function loadLibc(): NonNullable<typeof libc> {
  if (libc) return libc
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const koffi = require('koffi') as typeof import('koffi')
  const lib = koffi.load('libc.so.6')
  // ioctl is variadic: declared as such, the argument is passed the way the C ABI wants.
  const fn = lib.func('int ioctl(int fd, unsigned long request, ...)')
  libc = { ioctl: fn as unknown as Ioctl, errno: () => koffi.errno() }
  return libc
}

function errnoName(n: number): string {
  return Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`
}

/** The struct ifreq TUNSETIFF takes (exported for tests). */
export function tunIfreq(name: string): Buffer {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(name)) throw new TunnelError('INTERNAL', `invalid interface name "${name}"`)
  const ifr = Buffer.alloc(IFREQ_SIZE)
  ifr.write(name, 0, IFNAMSIZ - 1, 'ascii')
  const flags = IFF_TUN | IFF_NO_PI
  if (os.endianness() === 'LE') ifr.writeUInt16LE(flags, IFNAMSIZ)
  else ifr.writeUInt16BE(flags, IFNAMSIZ)
  return ifr
}

function interfaceMtu(name: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim())
    return Number.isInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

/** Opens /dev/net/tun, or explains why it cannot be opened. */
function openClone(path: string): number {
  try {
    // libuv opens with O_CLOEXEC always: children (an external engine) do not inherit it.
    return fs.openSync(path, fs.constants.O_RDWR)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const uid = process.getuid?.()
    throw new TunnelError('FW_UNSUPPORTED', `cannot open ${path}: ${code ?? String(e)}`, {
      hint: code === 'EACCES'
        ? `${path} is not accessible to uid ${uid}: most distributions make it mode 0666 (chmod 0666 ${path}), or run as root`
        : code === 'ENOENT' ? 'load the tun module (modprobe tun); in a container, pass --device /dev/net/tun' : undefined,
      cause: e,
    })
  }
}

/** Attaches to the existing TUN interface `name` (created and owned for us by the helper). */
export async function openTunDevice(name: string, opts: OpenTunOptions = {}): Promise<TunDevice> {
  if (process.platform !== 'linux') throw new TunnelError('FW_UNSUPPORTED', `TUN devices are opened this way on Linux only (platform ${process.platform})`)
  const ifr = tunIfreq(name)
  const c = loadLibc()
  const fd = openClone(opts.clonePath ?? '/dev/net/tun')
  if (c.ioctl(fd, TUNSETIFF, 'void *', ifr) !== 0) {
    const err = errnoName(c.errno())
    fs.closeSync(fd)
    throw new TunnelError('FW_UNSUPPORTED', `TUNSETIFF ${name}: ${err}`, {
      hint: err === 'EPERM'
        ? `${name} belongs to another user: the helper creates it for the uid the tunnel runs as`
        : err === 'EBUSY' ? `${name} is already attached to another process` : undefined,
    })
  }
  return new Device(name, fd, opts.mtu ?? interfaceMtu(name) ?? 1500)
}

/**
 * Wraps an already open packet descriptor (one packet per read/write) as a TunDevice; the
 * device owns the fd from here. Used for macOS utun sockets (utun-darwin.ts), whose frames
 * still carry their 4-byte family header at this level.
 */
export function packetDeviceFromFd(name: string, fd: number, mtu: number): TunDevice {
  return new Device(name, fd, mtu)
}

type PipeHandle = { open(fd: number): number }
type PipeBinding = { Pipe: new (type: number) => PipeHandle; constants: { SOCKET: number } }

class Device implements TunDevice {
  private readonly socket: net.Socket
  private readonly packetCbs: Array<(p: Buffer) => void> = []
  private readonly errorCbs: Array<(e: Error) => void> = []
  private closed = false
  private readonly counters = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0, dropped: 0 }

  constructor(readonly name: string, private readonly fd: number, readonly mtu: number) {
    const { Pipe, constants } = (process as unknown as { binding(n: string): PipeBinding }).binding('pipe_wrap')
    const handle = new Pipe(constants.SOCKET)
    const rc = handle.open(fd)
    if (rc !== 0) {
      fs.closeSync(fd)
      throw new TunnelError('INTERNAL', `tun ${name}: uv_pipe_open failed (${rc})`)
    }
    // From here the handle owns the fd: destroying the socket closes it.
    this.socket = new net.Socket({ handle, readable: true, writable: false } as unknown as net.SocketConstructorOpts)
    this.socket.pause()
    this.socket.on('data', (p: Buffer) => {
      this.counters.packetsIn++
      this.counters.bytesIn += p.length
      for (const cb of this.packetCbs) cb(p)
    })
    this.socket.on('error', (e) => {
      if (this.closed) return
      void this.close()
      for (const cb of this.errorCbs) cb(new TunnelError('FW_APPLY', `tun ${name}: read: ${e.message}`, { cause: e }))
    })
  }

  onPacket(cb: (packet: Buffer) => void): void {
    this.packetCbs.push(cb)
    // Reading starts with the first consumer: until then the kernel queues (txqueuelen).
    if (this.packetCbs.length === 1 && !this.closed) this.socket.resume()
  }

  onError(cb: (err: Error) => void): void {
    this.errorCbs.push(cb)
  }

  write(packet: Buffer): void {
    if (this.closed) {
      this.counters.dropped++
      return
    }
    try {
      // One write() = one packet. A short write cannot happen on a TUN fd.
      fs.writeSync(this.fd, packet)
      this.counters.packetsOut++
      this.counters.bytesOut += packet.length
    } catch {
      this.counters.dropped++
    }
  }

  stats(): TunDeviceStats {
    return { ...this.counters }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.closed = true
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve())
      this.socket.destroy()
    })
  }
}
