/**
 * DIOCNATLOOK on /dev/pf, done by the privileged helper (the device is crw------- root:wheel).
 * The system calls come through an injectable PfSyscalls so the lookup logic runs in tests on
 * Linux; the real one binds libSystem with koffi and exists on darwin only.
 *
 * Not yet run on a real Mac. Two details that matter there:
 *  - ioctl(2) is variadic (`int ioctl(int, unsigned long, ...)`). On Apple arm64 variadic
 *    arguments go on the stack, not in registers, so declaring it as a fixed 3-argument
 *    function would pass garbage: it is declared with `...` and called with an explicit type.
 *  - O_RDONLY is enough: DIOCNATLOOK is in the list pfioctl() allows without FWRITE
 *    (xnu bsd/net/pf_ioctl.c), so the helper never holds /dev/pf writable for lookups.
 */
import * as os from 'node:os'
import { TunnelError } from '../../errors'
import { diocNatlook, packNatLook, unpackNatLook, type NatLookAnswer, type NatLookQuery } from './pf-natlook'

/** The three system calls a lookup needs; each returns -1 and sets errno() on failure. */
export interface PfSyscalls {
  open(path: string, flags: number): number
  ioctl(fd: number, request: number, arg: Buffer): number
  close(fd: number): number
  errno(): number
}

/** Answers a natlook query (the helper's `natlook` op). */
export type NatLookFn = (q: NatLookQuery) => Promise<NatLookAnswer>

const O_RDONLY = 0
/** Darwin errno values used below (same numbers as Linux for these). */
const ENOENT = 2
const E2BIG = 7
const EINVAL = 22

function errnoName(errno: number): string {
  return Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`
}

/** Keeps /dev/pf open (one open per helper, not per connection) and runs lookups on it. */
export class PfNatLooker {
  private fd = -1

  constructor(
    private readonly sys: PfSyscalls,
    private readonly arch: string = process.arch,
    private readonly device = '/dev/pf',
  ) {}

  /** Original destination of the connection `q`; ORIGINAL_DST with the reason otherwise. */
  lookup(q: NatLookQuery): NatLookAnswer {
    const buf = packNatLook(q, this.arch)
    const request = diocNatlook(this.arch)
    if (this.fd < 0) {
      this.fd = this.sys.open(this.device, O_RDONLY)
      if (this.fd < 0) {
        const e = this.sys.errno()
        throw new TunnelError('ORIGINAL_DST', `open ${this.device}: ${errnoName(e)}`, {
          hint: 'the pf lookup runs in the privileged helper, as root',
        })
      }
    }
    if (this.sys.ioctl(this.fd, request, buf) !== 0) {
      const e = this.sys.errno()
      const why = e === ENOENT
        ? 'no pf state (the connection was not redirected by pf)'
        : e === E2BIG ? 'more than one pf state matches' : e === EINVAL ? 'EINVAL (bad query or struct layout)' : errnoName(e)
      throw new TunnelError('ORIGINAL_DST', `ioctl(DIOCNATLOOK): ${why}`)
    }
    return unpackNatLook(buf, this.arch)
  }

  close(): void {
    if (this.fd >= 0) this.sys.close(this.fd)
    this.fd = -1
  }
}

let darwinSys: PfSyscalls | undefined

/** libSystem's open/ioctl/close through koffi; FW_UNSUPPORTED anywhere but macOS. */
export function darwinSyscalls(platform: NodeJS.Platform = process.platform): PfSyscalls {
  if (platform !== 'darwin') {
    throw new TunnelError('FW_UNSUPPORTED', `pf lookups need macOS (platform ${platform})`, {
      hint: 'on Linux the original destination comes from SO_ORIGINAL_DST (--method nft or nat)',
    })
  }
  if (darwinSys) return darwinSys
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const koffi = require('koffi') as typeof import('koffi')
  const lib = koffi.load('/usr/lib/libSystem.B.dylib')
  const open = lib.func('int open(const char *path, int flags, ...)') as unknown as (p: string, f: number) => number
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)') as unknown as
    (fd: number, req: number, t: string, arg: Buffer) => number
  const close = lib.func('int close(int fd)') as unknown as (fd: number) => number
  darwinSys = {
    open: (p, f) => open(p, f),
    ioctl: (fd, req, arg) => ioctl(fd, req, 'void *', arg),
    close: (fd) => close(fd),
    errno: () => koffi.errno(),
  }
  return darwinSys
}

/**
 * The helper's default natlook: a PfNatLooker over the real system calls, created on first
 * use; on anything but macOS every call rejects with FW_UNSUPPORTED.
 */
export function defaultNatLook(platform: NodeJS.Platform = process.platform): NatLookFn {
  let looker: PfNatLooker | undefined
  return async (q) => {
    looker ??= new PfNatLooker(darwinSyscalls(platform))
    return looker.lookup(q)
  }
}
