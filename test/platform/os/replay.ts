/**
 * Replays parsed notifications through the relevance rules the way NetWatcher does (link states
 * follow link events; the path stays what the test says), and reports the strongest verdict.
 */
import type { BastionPath, LinkState, NetEvent } from '../../../src/platform/os/net-events'
import { classifyNetEvent } from '../../../src/platform/os/net-relevance'

export type Level = 'none' | 'soft' | 'hard'

export class Replay {
  readonly links = new Map<number, LinkState>()
  constructor(
    readonly bastion: string,
    public path: BastionPath | undefined,
    readonly opts: { ignoreDevs?: string[]; ignoreTables?: string[] } = {},
  ) {}

  /** Strongest verdict over the events, with the reasons of the relevant ones. */
  run(events: NetEvent[]): { level: Level; reasons: string[] } {
    let level: Level = 'none'
    const reasons: string[] = []
    for (const ev of events) {
      const r = classifyNetEvent(ev, {
        bastion: this.bastion,
        family: this.bastion.includes(':') ? 6 : 4,
        path: this.path,
        links: this.links,
        ignoreDevs: new Set(this.opts.ignoreDevs ?? []),
        ignoreTables: new Set(this.opts.ignoreTables ?? []),
      })
      if (ev.kind === 'link') {
        if (ev.deleted) this.links.delete(ev.index)
        else this.links.set(ev.index, { index: ev.index, name: ev.name, up: ev.up, running: ev.running })
      }
      if (r.level === 'none') continue
      reasons.push(r.reason)
      if (r.level === 'hard' || level === 'none') level = r.level
    }
    return { level, reasons }
  }
}
