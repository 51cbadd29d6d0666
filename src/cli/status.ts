import { leftGuards } from '../tunnel/fail-closed'
import { listInstances } from '../status/control-client'
import { formatStatus } from '../status/status-format'

/**
 * `subnet-tunnel status [--json]`: every running instance of this user, read from their
 * control sockets (stale sockets of dead instances are cleaned up on the way).
 */
export async function runStatus(json: boolean): Promise<number> {
  const instances = await listInstances()
  process.stdout.write(json ? JSON.stringify(instances, null, 2) + '\n' : formatStatus(instances) + '\n')
  if (!json && process.platform === 'linux') {
    // --fail-closed guards outlive their instance on purpose: say so, and how to lift them.
    const left = await leftGuards(instances.map((i) => i.instanceId))
    for (const g of left) {
      process.stdout.write(`fail-closed guard left by an exited instance (IPv${g.family}, routing table ${g.table}): the kernel refuses its subnets; \`sudo subnet-tunnel cleanup\` lifts it\n`)
    }
  }
  return 0
}
