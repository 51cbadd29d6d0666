/**
 * --route-by-name in the main process: addresses learnt from DNS answers for names under the
 * route-by-name domains, each tunnelled from the moment the answer arrives until its TTL plus a
 * grace period has run out — and beyond, for as long as a connection to it is open.
 *
 * The answers come from the far side (an attacker in our threat model), so every address is
 * screened before anything is asked of the kernel: single unicast host addresses only (never a
 * network, so never 0.0.0.0/0), none of the special ranges, nothing the route table excludes
 * (the bastion and jump hosts, this machine's addresses and networks, the user's excludes), and
 * at most MAX_LEARNT at once; the helper checks all of it again as root, and bounds the rate.
 * The caller awaits learn() before handing the answer to the client, so the client's first
 * connection is already captured.
 */
import ipaddr from 'ipaddr.js'
import { hostCidr, isIpLiteral } from '../config/cidr'
import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'
import { learnRefusal, MAX_LEARN_ENTRIES, MAX_LEARN_TTL_S, MAX_LEARNT } from '../config/learn-limits'

/** Shortest time an address is kept, whatever the answer's TTL (0 means "do not cache", not "do not route"). */
export const MIN_LEARN_TTL_S = 10
/** Default grace after the TTL: clients cache answers longer than they should (JVMs: 30 s, browsers: 60 s). */
export const DEFAULT_LEARN_GRACE_S = 60
/** How long a DNS answer waits for the kernel before it is handed out anyway. */
const KERNEL_TIMEOUT_MS = 3_000
/** Names remembered per address (for the routes view). */
const MAX_NAMES = 4

/** An address from a DNS answer and its TTL in seconds (dns/answer-addresses.ts makes them). */
export interface AnswerAddress {
  readonly address: string
  readonly ttl: number
}

export interface LearntRoute {
  readonly address: string
  readonly names: readonly string[]
  readonly learntAt: number
  /** Epoch ms; kept longer while connections to it are open. */
  readonly expiresAt: number
}

/** Adds or extends addresses in the kernel capture (the helper's learn request). */
export type LearnKernel = (entries: { address: string; ttl: number }[]) => Promise<unknown>

export interface LearntRoutesOptions {
  /** Why an address may not be routed (excluded, this machine's, already tunnelled), or undefined. */
  readonly screen: (address: string) => string | undefined
  /** Whether a connection to the address is open (then it outlives its TTL). */
  readonly inUse: (address: string) => boolean
  readonly graceS?: number
  readonly log: Logger
  readonly now?: () => number
  /** Sweep interval (ms); default 1000. */
  readonly sweepMs?: number
}

interface Held {
  address: string
  names: string[]
  learntAt: number
  expiresAt: number
}

export class LearntRoutes {
  private readonly held = new Map<string, Held>()
  private kernel: LearnKernel | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly graceS: number
  private readonly now: () => number
  private fullWarned = false

  constructor(private readonly opts: LearntRoutesOptions) {
    this.graceS = opts.graceS ?? DEFAULT_LEARN_GRACE_S
    this.now = opts.now ?? Date.now
  }

  /** Starts learning: until then (no kernel capture yet) answers are handed out unchanged. */
  attach(kernel: LearnKernel): void {
    this.kernel = kernel
    this.timer = setInterval(() => void this.sweep(), this.opts.sweepMs ?? 1_000)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.kernel = undefined
  }

  /** The learnt entry for an IP literal (IPv4-mapped IPv6 as IPv4), if any. */
  lookup(ip: string): LearntRoute | undefined {
    return this.held.get(canonical(ip) ?? ip)
  }

  /** Everything learnt now, soonest to expire first. */
  list(): LearntRoute[] {
    return [...this.held.values()].sort((a, b) => a.expiresAt - b.expiresAt).map((h) => ({ ...h, names: [...h.names] }))
  }

  /**
   * Captures the addresses an answer for `name` gave, before the answer goes to the client.
   * Never throws: an address that cannot be captured is logged and left out.
   */
  async learn(name: string, addresses: readonly AnswerAddress[]): Promise<void> {
    const kernel = this.kernel
    if (!kernel || addresses.length === 0) return
    const { log } = this.opts
    const now = this.now()
    const want: { address: string; ttl: number; expiresAt: number }[] = []
    for (const a of addresses) {
      const address = canonical(a.address)
      const why = address === undefined ? 'not an IP address' : (learnRefusal(hostCidr(address)) ?? this.opts.screen(address))
      if (why !== undefined || address === undefined) {
        log.verbose('route', `${name}: not routing ${a.address}: ${why}`)
        continue
      }
      const ttl = Math.min(Math.max(a.ttl, MIN_LEARN_TTL_S), MAX_LEARN_TTL_S - this.graceS) + this.graceS
      const expiresAt = now + ttl * 1000
      const had = this.held.get(address)
      if (had) addName(had, name)
      // Already held for at least half of what this answer gives: nothing to ask the kernel.
      if (had && had.expiresAt - now >= (ttl * 1000) / 2) continue
      if (!had && this.held.size + want.length >= MAX_LEARNT) {
        if (!this.fullWarned) log.warn('route', `route-by-name: ${MAX_LEARNT} addresses learnt; more are not routed until some expire`)
        this.fullWarned = true
        continue
      }
      if (!want.some((w) => w.address === address)) want.push({ address, ttl, expiresAt })
    }
    if (want.length === 0) return
    try {
      for (let i = 0; i < want.length; i += MAX_LEARN_ENTRIES) {
        await withTimeout(kernel(want.slice(i, i + MAX_LEARN_ENTRIES).map(({ address, ttl }) => ({ address, ttl }))), KERNEL_TIMEOUT_MS)
      }
    } catch (e) {
      log.warn('route', `${name}: could not route ${want.map((w) => w.address).join(', ')}: ${errorMessage(e)}`)
      return
    }
    for (const w of want) {
      const had = this.held.get(w.address)
      if (had) had.expiresAt = Math.max(had.expiresAt, w.expiresAt)
      else this.held.set(w.address, { address: w.address, names: [name], learntAt: now, expiresAt: w.expiresAt })
      log.verbose('route', `${name}: routing ${w.address} for ${w.ttl} s (TTL + ${this.graceS} s grace)`)
    }
  }

  /**
   * Forgets what expired, except addresses with open connections: those get another grace
   * period, a little before the kernel would drop them (the helper's timers, nft's timeouts).
   */
  async sweep(): Promise<void> {
    const now = this.now()
    const kernel = this.kernel
    for (const h of [...this.held.values()]) {
      if (h.expiresAt - now > 2_000) continue
      if (kernel && this.opts.inUse(h.address)) {
        try {
          await kernel([{ address: h.address, ttl: this.graceS }])
          h.expiresAt = now + this.graceS * 1000
          this.opts.log.verbose('route', `keeping ${h.address} (${h.names.join(', ')}) for ${this.graceS} s more: connections to it are open`)
        } catch (e) {
          this.opts.log.warn('route', `could not keep ${h.address} routed: ${errorMessage(e)}`)
        }
        continue
      }
      if (h.expiresAt > now) continue
      this.held.delete(h.address)
      this.fullWarned = false
      this.opts.log.verbose('route', `no longer routing ${h.address} (${h.names.join(', ')}): its time ran out`)
    }
  }
}

function addName(h: Held, name: string): void {
  if (!h.names.includes(name) && h.names.length < MAX_NAMES) h.names.push(name)
}

/** An IP literal in canonical form (IPv4-mapped IPv6 as IPv4), or undefined. */
function canonical(ip: string): string | undefined {
  return isIpLiteral(ip) ? ipaddr.process(ip).toString() : undefined
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the privileged helper within ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
