/**
 * `--method tun` on macOS: a utun interface instead of Linux's persistent TUN device.
 *
 * A utun exists exactly as long as the kernel-control socket that created it, and creating one
 * needs root, so the helper cannot make it for us the way Linux's `ip tuntap … user UID` does:
 * on macOS this path runs in the main process and requires root (passing the socket from the
 * helper would need SCM_RIGHTS through FFI). Crash safety comes from the kernel: when the
 * process dies the socket closes, and the interface and every route through it go with it.
 * macOS has no policy routing, so excludes inside tunnelled networks get routes through their
 * original next hop, asked from `route -n get` before any route is added.
 *
 * NOT yet run on a real Mac: tested on Linux with fakes of the device and the executor.
 */
import { cidrsOverlap, formatCidr } from '../config/cidr'
import { TunnelError } from '../errors'
import type { Logger } from '../observe/logger'
import { applyPlan, realExecutor, revertSteps } from '../platform/firewall/executor'
import { type RouteVia, UTUN_MTU, parseRouteGet, utunPlan } from '../platform/firewall/tun-darwin'
import { NO_ROOT_NEEDED } from '../platform/helper/sudo-failure'
import type { PacketDevice } from '../platform/os/tun-device'
import type { CaptureSpec, Executor } from '../platform/firewall/types'
import { openUtunDevice } from '../platform/os/utun-darwin'

/** What the macOS path touches, injectable for tests. */
export interface DarwinTunSystem {
  readonly uid: number
  readonly exec: Executor
  /** Creates and opens a utun (its name is the device's name). */
  open(mtu: number): PacketDevice
}

export const realDarwinTunSystem = (): DarwinTunSystem => ({
  uid: process.getuid?.() ?? 0,
  exec: realExecutor(),
  open: (mtu) => openUtunDevice(mtu),
})

/**
 * Opens a utun, routes the spec into it and returns the device for the engine. Undo steps go to
 * `onStop` (routes, then the device: closing it also removes the interface).
 */
export async function startDarwinTun(
  spec: CaptureSpec,
  o: { log: Logger; onStop: (what: string, run: () => Promise<unknown>) => void; system?: DarwinTunSystem },
): Promise<PacketDevice> {
  const sys = o.system ?? realDarwinTunSystem()
  if (sys.uid !== 0) {
    throw new TunnelError('NEED_ROOT', '--method tun on macOS must run as root (a utun interface belongs to the process that creates it)', {
      hint: `run it with sudo, or use --method pf (${NO_ROOT_NEEDED})`,
    })
  }
  // Next hops first, while the routing table is still untouched.
  const routed = [...spec.include]
  const via = new Map<string, RouteVia>()
  for (const e of spec.exclude) {
    if (!routed.some((r) => cidrsOverlap(e, r))) continue
    const r = await sys.exec.run(['route', '-n', 'get', e.family === 6 ? '-inet6' : '-inet', e.address])
    const v = r.code === 0 ? parseRouteGet(r.stdout) : undefined
    if (v) via.set(formatCidr(e), v)
  }
  const dev = sys.open(UTUN_MTU)
  o.onStop(`close ${dev.name}`, () => dev.close())
  const plan = utunPlan(spec, dev.name, via)
  await applyPlan(sys.exec, plan)
  o.onStop(`remove the routes through ${dev.name}`, async () => {
    // Routes through the interface vanish with it; failures here are only logged.
    const r = await revertSteps(sys.exec, plan.revert)
    for (const f of r.failed) o.log.verbose('fw', `tun: ${f.error}`)
  })
  o.log.verbose('fw', `tun: ${dev.name} up, ${plan.apply.length} step(s)`)
  return dev
}
