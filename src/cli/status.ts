import { listInstances } from '../status/control-client'
import { formatStatus } from '../status/status-format'

/**
 * `subnet-tunnel status [--json]`: every running instance of this user, read from their
 * control sockets (stale sockets of dead instances are cleaned up on the way).
 */
export async function runStatus(json: boolean): Promise<number> {
  const instances = await listInstances()
  process.stdout.write(json ? JSON.stringify(instances, null, 2) + '\n' : formatStatus(instances) + '\n')
  return 0
}
