/**
 * The helper's side of --route-by-name: learnt addresses of the applied instance, each in the
 * kernel for a limited time. The main process asks (`learn`); this class, running as root,
 * decides again what may be added: the instance must have been applied for it (spec.learn, the
 * family among its families), the address outside every exclude of the spec (this machine's
 * own addresses and networks, the SSH transport, the user's excludes: so a DNS answer can never
 * capture the bastion, loopback or the LAN), and the count and the rate of new addresses
 * bounded. Backends whose kernel objects cannot time out (nat rules, tun routes) are removed by
 * a timer here; nft set elements time out in the kernel.
 */
import { cidrsOverlap, formatCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import { MAX_LEARNT, MAX_NEW_LEARNT_PER_MINUTE } from '../../config/learn-limits'
import { firstLine } from '../firewall/executor'
import type { CaptureSpec, Executor, Firewall } from '../firewall/types'
import type { LearnEntry } from './protocol'

export interface LearnResult {
  added: number
  refreshed: number
}

interface Held {
  expiresAt: number
  timer?: NodeJS.Timeout
}

export class HelperLearnt {
  private readonly held = new Map<string, Held>()
  /** Times (ms) of the new addresses of the last minute, oldest first. */
  private recent: number[] = []

  constructor(
    private readonly fw: Firewall,
    private readonly spec: CaptureSpec,
    private readonly exec: Executor,
    private readonly log: (msg: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.held.size
  }

  /** Adds or extends every entry, or refuses the whole request before running anything. */
  async learn(entries: readonly LearnEntry[]): Promise<LearnResult> {
    const steps = this.fw.learn
    const families = this.spec.learn?.families ?? []
    if (!steps || families.length === 0) throw new TunnelError('HELPER', `learn: the applied ${this.fw.name} instance was not set up for learnt addresses`)
    const now = this.now()
    this.recent = this.recent.filter((t) => t > now - 60_000)
    let fresh = 0
    for (const e of entries) {
      const text = formatCidr(e.address)
      if (!families.includes(e.address.family)) throw new TunnelError('HELPER', `learn: ${text}: IPv${e.address.family} is not captured by this instance`)
      const excluded = this.spec.exclude.find((x) => cidrsOverlap(x, e.address))
      if (excluded) throw new TunnelError('HELPER', `learn: ${text} is inside the excluded ${formatCidr(excluded)}`)
      if (!this.held.has(e.address.address)) fresh++
    }
    if (this.held.size + fresh > MAX_LEARNT) throw new TunnelError('HELPER', `learn: more than ${MAX_LEARNT} learnt addresses`)
    if (this.recent.length + fresh > MAX_NEW_LEARNT_PER_MINUTE) {
      throw new TunnelError('HELPER', `learn: more than ${MAX_NEW_LEARNT_PER_MINUTE} new addresses in a minute`)
    }
    const result: LearnResult = { added: 0, refreshed: 0 }
    for (const e of entries) {
      const key = e.address.address
      const had = this.held.get(key)
      const expiresAt = now + e.ttl * 1000
      if (had && had.expiresAt >= expiresAt) continue
      if (had && steps.kernelTimeout) await this.runFirst(steps.refresh!(this.spec, e.address, e.ttl), `refresh ${key}`)
      else if (!had) await this.runAll(steps.add(this.spec, e.address, e.ttl), `add ${key}`)
      if (had) {
        clearTimeout(had.timer)
        result.refreshed++
      } else {
        this.recent.push(now)
        result.added++
      }
      const held: Held = { expiresAt }
      if (!steps.kernelTimeout) {
        held.timer = setTimeout(() => void this.expire(e.address), e.ttl * 1000)
        held.timer.unref()
      }
      this.held.set(key, held)
    }
    return result
  }

  /** Forgets every timer (the instance's revert removes the kernel objects with it). */
  clear(): void {
    for (const h of this.held.values()) clearTimeout(h.timer)
    this.held.clear()
  }

  private async expire(address: LearnEntry['address']): Promise<void> {
    const h = this.held.get(address.address)
    if (!h || h.expiresAt > this.now() + 50) return
    this.held.delete(address.address)
    try {
      await this.runAll(this.fw.learn!.remove(this.spec, address), `remove ${address.address}`)
    } catch (e) {
      this.log(`learn: ${String(e instanceof Error ? e.message : e)}`)
    }
  }

  private async runAll(steps: readonly string[][], what: string): Promise<void> {
    for (const argv of steps) {
      const r = await this.exec.run(argv)
      if (r.code !== 0) throw new TunnelError('FW_APPLY', `${this.fw.name}: learn: ${what}: ${firstLine(r.stderr) || `exit ${r.code}`}`)
    }
  }

  /** Tries each alternative in order; the first that fully succeeds wins. */
  private async runFirst(alternatives: readonly string[][][], what: string): Promise<void> {
    let last: unknown
    for (const steps of alternatives) {
      try {
        await this.runAll(steps, what)
        return
      } catch (e) {
        last = e
      }
    }
    throw last
  }
}
