/**
 * Containment of networks by number, for lists a remote side controls (auto-nets.ts: up to a few
 * thousand routes from the bastion). cidr.ts's cidrsOverlap re-parses text on every call, and
 * comparing every route with every other one made 4096 routes cost half a minute of CPU (found
 * by remote-routes.fuzz.test.ts). Here each network is turned into a bigint once, and a set
 * answers "which member holds this network" with one map lookup per prefix length in use.
 */
import ipaddr from 'ipaddr.js'
import type { Cidr } from './cidr'

const bitsCache = new WeakMap<Cidr, bigint>()

/** The network's address as a number (cached per Cidr object). */
export function cidrBits(c: Cidr): bigint {
  let b = bitsCache.get(c)
  if (b === undefined) {
    b = 0n
    for (const byte of ipaddr.parse(c.address).toByteArray()) b = (b << 8n) | BigInt(byte)
    bitsCache.set(c, b)
  }
  return b
}

function width(c: Cidr): number {
  return c.family === 4 ? 32 : 128
}

/** The first `prefix` bits of c's address. */
function head(c: Cidr, prefix: number): bigint {
  return cidrBits(c) >> BigInt(width(c) - prefix)
}

/** Whether `outer` holds all of `inner` (equal networks included). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && outer.prefix <= inner.prefix && head(inner, outer.prefix) === head(outer, outer.prefix)
}

/** Networks with a value each; finds the broadest member holding a given network. */
export class CidrSet<T> {
  // family:prefix → network head → value
  private readonly byPrefix = new Map<string, Map<bigint, T>>()
  private readonly prefixes: { family: 4 | 6; prefix: number }[] = []

  /** Adds a network; an equal network already present keeps its value. */
  add(c: Cidr, value: T): void {
    const key = `${c.family}:${c.prefix}`
    let m = this.byPrefix.get(key)
    if (!m) {
      m = new Map()
      this.byPrefix.set(key, m)
      this.prefixes.push({ family: c.family, prefix: c.prefix })
      this.prefixes.sort((a, b) => a.prefix - b.prefix)
    }
    if (!m.has(head(c, c.prefix))) m.set(head(c, c.prefix), value)
  }

  /** The value of the broadest member holding c (c itself when `strict` is false). */
  holder(c: Cidr, strict = false): T | undefined {
    for (const { family, prefix } of this.prefixes) {
      if (family !== c.family || prefix > c.prefix || (strict && prefix === c.prefix)) continue
      const v = this.byPrefix.get(`${family}:${prefix}`)!.get(head(c, prefix))
      if (v !== undefined) return v
    }
    return undefined
  }
}
