/**
 * Runs the conntrack deletions a backend asks for (DNS flows after apply and revert, stale
 * redirected TCP flows before apply and after revert: dns-capture.ts, stale-flows.ts). Best
 * effort: a missing conntrack tool or "0 flow entries deleted" (exit 1) is not an error.
 */
import type { Executor } from '../firewall/types'

export async function flushConntrack(exec: Executor, steps: readonly string[][], verbose: (msg: string) => void): Promise<void> {
  for (const argv of steps) {
    const r = await exec.run(argv)
    if (r.code === 127) {
      verbose('conntrack not installed: flows redirected before this change (DNS, and TCP a dead proxy left) keep their old route until they expire')
      return
    }
    if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) verbose(`${argv.join(' ')}: ${r.stderr.trim()}`)
  }
}
