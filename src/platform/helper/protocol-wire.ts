/**
 * The client's side of the helper protocol (protocol.ts): specs into their wire form, errors
 * as they travel, and the line framing both ends use (a line over MAX_LINE is refused, never
 * buffered).
 */
import { formatCidr } from '../../config/cidr'
import { TunnelError } from '../../errors'
import type { GuardSpec } from '../firewall/fail-closed'
import type { CaptureSpec } from '../firewall/types'
import { MAX_LINE, type WireError, type WireSpec } from './protocol'

/** The wire form of a guard spec. */
export function guardSpecToWire(spec: GuardSpec): Record<string, unknown> {
  return {
    instanceId: spec.instanceId,
    include: spec.include.map(formatCidr),
    exclude: spec.exclude.map(formatCidr),
    ...(spec.ownerUid !== undefined && { ownerUid: spec.ownerUid }),
  }
}

/** The wire form of a spec (what the client sends). */
export function specToWire(spec: CaptureSpec): WireSpec {
  return {
    instanceId: spec.instanceId,
    listenPort: spec.listenPort,
    include: spec.include.map(formatCidr),
    exclude: spec.exclude.map(formatCidr),
    ...(spec.dns && {
      dns: {
        servers: [...spec.dns.servers],
        port: spec.dns.port,
        ...(spec.dns.gatewayPort !== undefined && { gatewayPort: spec.dns.gatewayPort }),
        exemptSourcePorts: [...spec.dns.exemptSourcePorts],
      },
    }),
    ...(spec.gateway === true && { gateway: true }),
    ...(spec.gatewayInterfaces && { gatewayInterfaces: [...spec.gatewayInterfaces] }),
    ...(spec.gatewaySources && { gatewaySources: spec.gatewaySources.map(formatCidr) }),
    ...(spec.ownerUid !== undefined && { ownerUid: spec.ownerUid }),
    ...(spec.tunOwner !== undefined && { tunOwner: spec.tunOwner }),
    ...(spec.cgroup !== undefined && { cgroup: spec.cgroup }),
    ...(spec.cgroupMatch !== undefined && { cgroupMatch: spec.cgroupMatch }),
    ...(spec.learn && { learn: { families: [...spec.learn.families] } }),
  }
}

/** An error as it travels; non-TunnelErrors become INTERNAL. */
export function toWireError(e: unknown): WireError {
  if (e instanceof TunnelError) {
    return e.hint === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, hint: e.hint }
  }
  return { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) }
}

/** Splits a byte stream into lines, refusing (not buffering) lines longer than `max`. */
export class LineSplitter {
  private buf = ''
  private discarding = false

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onTooLong: () => void,
    private readonly max = MAX_LINE,
  ) {}

  push(chunk: string): void {
    let data = chunk
    for (;;) {
      const nl = data.indexOf('\n')
      if (nl < 0) {
        if (!this.discarding) this.buf += data
        if (this.buf.length > this.max) {
          // Report once, then drop everything up to the next newline.
          this.buf = ''
          this.discarding = true
          this.onTooLong()
        }
        return
      }
      const part = data.slice(0, nl)
      data = data.slice(nl + 1)
      if (this.discarding) {
        this.discarding = false
        continue
      }
      const line = this.buf + part
      this.buf = ''
      if (line.length > this.max) this.onTooLong()
      else if (line.trim() !== '') this.onLine(line)
    }
  }
}
