/**
 * --fail-closed in the running tunnel: builds the kernel guard through the helper (open), then
 * closes it whenever a bastion has no SSH connection up and opens it when all are back
 * (src/platform/firewall/fail-closed.ts says how the kernel refuses). The helper closes it
 * for good when the capture goes, at exit, whatever the reason; `subnet-tunnel cleanup` opens it.
 *
 * With several bastions one of them down closes the guard for every captured network: failing
 * closed errs on that side.
 */
import { execFile } from 'node:child_process'
import type { Cidr } from '../config/cidr'
import { GUARD_SCAN_ARGV, guardTable, parseGuardRules } from '../platform/firewall/fail-closed'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import type { SshConnection } from '../ssh/engine'
import type { Helper } from './factories'

export interface FailClosedDeps {
  readonly helper: Helper
  /** Every pool's connections, now. */
  readonly pools: () => Iterable<readonly SshConnection[]>
  readonly log: Logger
}

/** Whether some bastion has no connection up (then the captured networks are refused). */
export function sshDown(pools: Iterable<readonly SshConnection[]>): boolean {
  for (const conns of pools) if (!conns.some((c) => c.state === 'up')) return true
  return false
}

export class FailClosedSwitch {
  /** What the guard was last asked to be (undefined: not built). */
  private requested: boolean | undefined
  /** Requests go one after the other, each for the state at the time it runs. */
  private chain: Promise<void> = Promise.resolve()

  constructor(private readonly d: FailClosedDeps) {}

  /** The guard exists (built at start) and its state as last requested. */
  get state(): 'open' | 'closed' | undefined {
    return this.requested === undefined ? undefined : this.requested ? 'closed' : 'open'
  }

  /** Builds the guard (open), then brings it to the SSH state of now. */
  async start(spec: { instanceId: string; include: readonly Cidr[]; exclude: readonly Cidr[]; ownerUid?: number }): Promise<void> {
    const { helper } = this.d
    if (!helper.guard || !helper.guardState) throw new Error('the privileged helper cannot build a fail-closed guard')
    await helper.guard(spec)
    this.requested = false
    this.update()
    await this.chain
  }

  /** An SSH connection went up or down: close or open the guard to match. */
  update(): void {
    if (this.requested === undefined) return
    this.chain = this.chain.then(async () => {
      const closed = sshDown(this.d.pools())
      if (closed === this.requested) return
      try {
        await this.d.helper.guardState!(closed)
        this.requested = closed
        this.d.log.info('fw', closed
          ? 'fail-closed: SSH is down; the kernel refuses connections to the tunnelled networks until it is back'
          : 'fail-closed: SSH is back; the tunnelled networks are open again')
      } catch (e) {
        this.d.log.error('fw', `fail-closed: cannot ${closed ? 'close' : 'open'} the guard: ${errorMessage(e)}`)
      }
    })
  }
}

/**
 * Closed guards that no running instance owns (`running`: their instance ids): left by tunnels
 * that exited with --fail-closed. `ip rule show` needs no privileges. For `status`.
 */
export async function leftGuards(running: readonly string[]): Promise<Array<{ family: 4 | 6; table: number }>> {
  const owned = new Set(running.map(guardTable))
  const outputs = await Promise.all(
    GUARD_SCAN_ARGV.map(
      (argv) => new Promise<string | undefined>((resolve) => execFile(argv[0]!, argv.slice(1), { timeout: 5000 }, (err, out) => resolve(err ? undefined : out))),
    ),
  )
  return parseGuardRules(outputs).filter((g) => !owned.has(g.table))
}
