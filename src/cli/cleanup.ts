import { createLogger, levelFromFlags } from '../observe/logger'
import { startHelper } from '../platform/helper/helper-client'

/**
 * `subnet-tunnel cleanup`: removes rules and journal entries of instances whose helper is gone
 * (crash, kill -9 of both processes), in this network namespace. Live instances are untouched.
 */
export async function runCleanup(verbose: number): Promise<number> {
  const log = createLogger({ level: levelFromFlags(verbose, 0) })
  const helper = await startHelper({ log })
  try {
    const report = await helper.cleanup()
    // The helper sweeps once as it starts, before this request: what it removed then counts.
    const first = helper.startupCleanup
    const removed = [...(first?.removed ?? []), ...report.removed]
    process.stderr.write(
      removed.length === 0 ? 'subnet-tunnel cleanup: nothing to remove\n' : `subnet-tunnel cleanup: removed ${removed.join(', ')}\n`,
    )
    for (const w of new Set([...(first?.warnings ?? []), ...(report.warnings ?? [])])) log.warn('fw', w)
    return 0
  } finally {
    await helper.close()
  }
}
