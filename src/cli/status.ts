import { listInstances } from '../status/control-client'
import { formatRoutes } from '../status/routes-format'
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

/** `subnet-tunnel routes [--json]`: what each running instance tunnels now, and why. */
export async function runRoutes(json: boolean): Promise<number> {
  const instances = await listInstances()
  const routes = instances.map((s) => ({ instanceId: s.instanceId, pid: s.pid, routes: s.routes ?? [] }))
  process.stdout.write(json ? JSON.stringify(routes, null, 2) + '\n' : formatRoutes(instances) + '\n')
  return 0
}
