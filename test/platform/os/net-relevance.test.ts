import { describe, expect, it } from 'vitest'
import type { BastionPath, LinkState, NetEvent } from '../../../src/platform/os/net-events'
import { networkContains, samePath } from '../../../src/platform/os/net-events'
import { classifyNetEvent, type RelevanceContext } from '../../../src/platform/os/net-relevance'

const path: BastionPath = { dev: 'eth0', index: 2, via: '192.168.1.1', src: '192.168.1.20', up: true }
const ctx = (over: Partial<RelevanceContext> = {}): RelevanceContext => ({
  bastion: '203.0.113.7', family: 4, path, links: new Map<number, LinkState>([[2, { index: 2, name: 'eth0', up: true, running: true }]]), ...over,
})
const route = (over: Partial<Extract<NetEvent, { kind: 'route' }>> = {}): NetEvent =>
  ({ kind: 'route', deleted: false, family: 4, type: 'unicast', network: '0.0.0.0', prefixLen: 0, ...over })
const level = (ev: NetEvent, c = ctx()): string => classifyNetEvent(ev, c).level

describe('classifyNetEvent', () => {
  it('routes: only those covering the bastion (or its gateway, when deleted) matter', () => {
    expect(level(route())).toBe('soft')
    expect(level(route({ network: '203.0.0.0', prefixLen: 16 }))).toBe('soft')
    expect(level(route({ network: '203.0.113.7', prefixLen: 32, deleted: true }))).toBe('soft')
    expect(level(route({ network: '203.0.114.0', prefixLen: 24 }))).toBe('none')
    expect(level(route({ network: '10.0.0.0', prefixLen: 8, dev: 'eth0' }))).toBe('none') // our interface, not our route
    expect(level(route({ network: '192.168.1.0', prefixLen: 24, dev: 'eth0', deleted: true }))).toBe('soft') // the gateway's subnet
    expect(level(route({ network: '192.168.1.0', prefixLen: 24, dev: 'eth0' }))).toBe('none')
    expect(level(route({ family: 6, network: '::' }))).toBe('none')
    expect(level(route({ family: undefined, network: '0.0.0.0', dev: 'wg0' }))).toBe('soft') // "default dev wg0": could be ours
    expect(level(route({ type: 'local', network: '203.0.113.7', prefixLen: 32, table: 'local' }))).toBe('none')
    expect(level(route({ type: 'blackhole', network: '203.0.113.0', prefixLen: 24 }))).toBe('soft')
    expect(level(route({ network: '203.0.113.7', prefixLen: 32, cloned: true }))).toBe('none')
  })

  it('our own devices and tables never matter, even when they cover the bastion', () => {
    const own = ctx({ ignoreDevs: new Set(['st1234']), ignoreTables: new Set(['1392508928']) })
    expect(level(route({ network: '128.0.0.0', prefixLen: 1, dev: 'st1234', table: '1392508928' }), own)).toBe('none')
    expect(level(route({ type: 'throw', network: '203.0.113.7', prefixLen: 32, table: '1392508928' }), own)).toBe('none')
    expect(level(route({ network: '128.0.0.0', prefixLen: 1, dev: 'st1234' }), ctx())).toBe('soft') // not told: covering
    expect(level({ kind: 'link', deleted: false, index: 9, name: 'st1234', up: true, running: true }, own)).toBe('none')
    expect(level({ kind: 'addr', deleted: false, index: 9, dev: 'st1234', family: 4, address: '169.254.77.1' }, ctx({ path: undefined, ignoreDevs: new Set(['st1234']) }))).toBe('none')
  })

  it('addresses: on the path interface soft, the source address removed hard, elsewhere none', () => {
    const addr = (over: object): NetEvent => ({ kind: 'addr', deleted: false, index: 2, dev: 'eth0', family: 4, address: '192.168.1.21', ...over })
    expect(level(addr({}))).toBe('soft')
    expect(level(addr({ deleted: true, address: '192.168.1.20' }))).toBe('hard')
    expect(level(addr({ index: 3, dev: 'eth1' }))).toBe('none')
    expect(level(addr({ family: 6, address: 'fe80::1' }))).toBe('none')
    // macOS: no index in address messages, the name decides.
    expect(level(addr({ index: undefined, deleted: true, address: '192.168.1.20' }))).toBe('hard')
    // A stale name (renamed interface) does not fool the index match.
    expect(level(addr({ dev: 'eth9', deleted: true, address: '192.168.1.20' }))).toBe('hard')
  })

  it('links: transitions of the path interface are hard, repeats and other links none', () => {
    const link = (over: object): NetEvent => ({ kind: 'link', deleted: false, index: 2, name: 'eth0', up: true, running: true, ...over })
    expect(level(link({}))).toBe('none') // MTU, promisc…: same up/running
    expect(level(link({ running: false }))).toBe('hard')
    expect(level(link({ up: false, running: false }))).toBe('hard')
    expect(level(link({ deleted: true }))).toBe('hard')
    expect(level(link({}), ctx({ path: { ...path, up: false } }))).toBe('hard') // carrier back: the lookup had seen it gone
    expect(level(link({ running: false }), ctx({ path: { ...path, up: false } }))).toBe('none') // already looked up and reported
    expect(level(link({}), ctx({ links: new Map() }))).toBe('none') // first sight, path says up: nothing new
    expect(level(link({}), ctx({ links: new Map(), path: { ...path, up: false } }))).toBe('hard')
    expect(level(link({ index: 3, name: 'eth1', running: false }))).toBe('none')
    expect(classifyNetEvent(link({ running: false }), ctx())).toEqual({ level: 'hard', reason: 'link eth0 lost carrier' })
  })

  it('with no route at all, anything that may bring one back is worth a look', () => {
    const none = ctx({ path: undefined, links: new Map([[3, { index: 3, up: false, running: false }]]) })
    expect(level({ kind: 'link', deleted: false, index: 3, name: 'eth1', up: true, running: true }, none)).toBe('soft')
    expect(level({ kind: 'link', deleted: false, index: 3, name: 'eth1', up: true, running: false }, none)).toBe('none')
    expect(level({ kind: 'addr', deleted: false, index: 3, dev: 'eth1', family: 4, address: '10.0.0.5' }, none)).toBe('soft')
    expect(level({ kind: 'addr', deleted: true, index: 3, dev: 'eth1', family: 4, address: '10.0.0.5' }, none)).toBe('none')
    expect(level(route({ dev: 'eth1', via: '10.0.0.1' }), none)).toBe('soft')
  })

  it('a gap (missed notifications, a monitor restart) always means look again', () => {
    expect(classifyNetEvent({ kind: 'gap', why: 'ip monitor restarted' }, ctx())).toEqual({ level: 'soft', reason: 'ip monitor restarted' })
  })
})

describe('helpers', () => {
  it('networkContains handles both families and zones', () => {
    expect(networkContains('0.0.0.0', 0, '203.0.113.7')).toBe(true)
    expect(networkContains('::', 0, '2001:db8::1')).toBe(true)
    expect(networkContains('::', 0, '203.0.113.7')).toBe(false)
    expect(networkContains('fe80::', 64, 'fe80::1%en0')).toBe(true)
    expect(networkContains('203.0.113.0', 25, '203.0.113.200')).toBe(false)
  })

  it('samePath compares interface, gateway, source and link state', () => {
    expect(samePath(path, { ...path })).toBe(true)
    expect(samePath(path, { ...path, index: 99 })).toBe(true) // index alone: same interface renamed? same path
    expect(samePath(path, { ...path, via: '192.168.1.254' })).toBe(false)
    expect(samePath(path, { ...path, src: '192.168.1.21' })).toBe(false)
    expect(samePath(path, { ...path, up: false })).toBe(false)
    expect(samePath(undefined, undefined)).toBe(true)
    expect(samePath(path, undefined)).toBe(false)
  })
})
