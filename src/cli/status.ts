import { leftGuards } from '../tunnel/fail-closed'
import * as fs from 'node:fs'
import { currentNetns } from '../platform/helper/journal'
import { findInstances, type FoundInstance } from '../status/control-client'
import { listInstances } from '../status/control-client'
import { formatRoutes } from '../status/routes-format'
import { formatStatus } from '../status/status-format'

/**
 * The running instances of this user that `status` and `stop` deal with: those of this network
 * namespace (a tunnel in another namespace captures nothing here), all of them with `all`.
 * Stale sockets of dead instances are cleaned up on the way. `brief`: their brief status only
 * (no connections; see ControlServerOptions.snapshot), enough to find and stop them.
 */
export async function instancesHere(all: boolean, brief = false): Promise<{ here: FoundInstance[]; elsewhere: number; netns: number }> {
  const netns = currentNetns()
  const found = await findInstances({ brief })
  const mine = (f: FoundInstance): boolean => (f.status.netns ?? netnsOfPid(f.status.pid) ?? netns) === netns
  return { here: all ? found : found.filter(mine), elsewhere: all ? 0 : found.filter((f) => !mine(f)).length, netns }
}

/**
 * The network namespace of a process (instances of older versions do not say), or undefined
 * when it cannot be read (then it counts as ours: better listed once too often than hidden).
 */
function netnsOfPid(pid: number): number | undefined {
  try {
    return fs.statSync(`/proc/${pid}/ns/net`).ino
  } catch {
    return undefined
  }
}

/** `subnet-tunnel status [--json] [--all]`. */
export async function runStatus(json: boolean, all = false): Promise<number> {
  const { here, elsewhere, netns } = await instancesHere(all)
  const snapshots = here.map((f) => f.status)
  process.stdout.write(json ? JSON.stringify(snapshots, null, 2) + '\n' : formatStatus(snapshots, { netns, otherNetns: elsewhere }) + '\n')
  if (!json && process.platform === 'linux') {
    // --fail-closed guards outlive their instance on purpose: say so, and how to lift them.
    const left = await leftGuards(here.map((f) => f.status.instanceId))
    for (const g of left) {
      process.stdout.write(`fail-closed guard left by an exited instance (IPv${g.family}, routing table ${g.table}): the kernel refuses its subnets; \`sudo subnet-tunnel cleanup\` lifts it\n`)
    }
  }
  return 0
}

/** `subnet-tunnel routes [--json]`: what each running instance tunnels now, and why. */
export async function runRoutes(json: boolean): Promise<number> {
  const instances = await listInstances()
  const routes = instances.map((s) => ({ instanceId: s.instanceId, pid: s.pid, routes: s.routes ?? [] }))
  process.stdout.write(json ? JSON.stringify(routes, null, 2) + '\n' : formatRoutes(instances) + '\n')
  return 0
}
