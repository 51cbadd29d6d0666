/**
 * Everything the runtime starts, as factories it is given: the real ones here, fakes in the
 * unit test of the start and stop order (test/tunnel/runtime-order.test.ts).
 */
import * as dns from 'node:dns/promises'
import type { Cidr } from '../config/cidr'
import { localAddressNetworks, transportExcludes } from '../config/subnets'
import type { Logger } from '../observe/logger'
import { defaultHelperLaunch, type HelperClient, startHelper } from '../platform/helper/helper-client'
import { TransparentListener, type TransparentListenerOptions } from '../router/transparent'
import { createTtyPrompter } from '../ssh/builtin/tty-prompter'
import type { SshEngine } from '../ssh/engine'
import { opensshEngine } from '../ssh/openssh/engine'
import { type DnsDeps, type DnsPlan, type DnsRuntime, startDns } from './dns-setup'
import { type FrontEndDeps, type FrontEndHandle, startFrontEnds } from './front-ends'
import { realWatcher, type WatcherLike, type WatchOptions } from './net-reconnect'
import type { TunnelPlan } from './plan'
import { startTun, type TunHandle, type TunSetupDeps } from './tun-setup'

/** The transparent listener as the runtime uses it. */
export interface CaptureListener {
  readonly port: number
  start(): Promise<number>
  stop(): Promise<void>
}

/** The privileged helper as the runtime uses it. */
export type Helper = Pick<HelperClient, 'probe' | 'apply' | 'revert' | 'close' | 'natlook' | 'onExit' | 'learn'> &
  Partial<Pick<HelperClient, 'startupCleanup' | 'guard' | 'guardState' | 'cgroupAdd'>>

export interface RuntimeFactories {
  /** Starts the privileged helper; it removes what dead instances left before it is ready. */
  helper(o: { log: Logger; allowTun: boolean }): Promise<Helper>
  /** Whether starting the helper may ask for a password on the terminal (then it goes first). */
  helperMayPrompt(): boolean
  /** The SSH engine the plan chose; one connection per bastion (more as a pool grows). */
  engine(log: Logger, plan: TunnelPlan): SshEngine
  listener(o: TransparentListenerOptions): CaptureListener
  /** --method tun: the device, its routes and the packet engine on it. */
  tun(d: TunSetupDeps): Promise<TunHandle>
  dns(plan: DnsPlan, deps: DnsDeps): Promise<DnsRuntime>
  frontEnds(plan: TunnelPlan, deps: FrontEndDeps): Promise<FrontEndHandle[]>
  /** Addresses the SSH transport connects to (never captured: it would loop). */
  transportExcludes(hosts: readonly string[]): Promise<Cidr[]>
  /** This machine's own networks (never captured). */
  localNetworks(): Cidr[]
  /** Watches the path to a bastion (net-reconnect.ts); absent: keepalive alone notices a dead path. */
  netWatcher?(o: WatchOptions, log: Logger): WatcherLike
  /** The address a transport host name resolves to first (what the SSH transport dials). */
  resolveHost?(host: string): Promise<string | undefined>
  /** This machine's interface networks (address + prefix), for --auto-nets; default: os.networkInterfaces(). */
  interfaceNetworks?(): Cidr[]
}

export function realFactories(): RuntimeFactories {
  return {
    helper: (o) => startHelper(o),
    helperMayPrompt: () => defaultHelperLaunch().interactive,
    engine: (log, plan) => {
      const e = plan.sshEngine
      // Loaded only when chosen: ssh2 and its crypto are ~25 ms of start-up the openssh engine
      // does not need (issue 18).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      if (e.name === 'builtin') return (require('../ssh/builtin/engine') as typeof import('../ssh/builtin/engine')).builtinEngine({ log })
      // ssh prompts on /dev/tty itself; without one it runs with BatchMode (never a hang).
      const tty = createTtyPrompter()
      return opensshEngine({ log, ssh: e.ssh, version: e.version, setpriv: e.setpriv, interactive: () => tty.isInteractive() })
    },
    listener: (o) => new TransparentListener(o),
    tun: startTun,
    dns: startDns,
    frontEnds: startFrontEnds,
    transportExcludes: (hosts) => transportExcludes(hosts),
    localNetworks: () => localAddressNetworks(),
    netWatcher: realWatcher,
    resolveHost: async (host) => (await dns.lookup(host, { all: true, verbatim: true }))[0]?.address,
  }
}
