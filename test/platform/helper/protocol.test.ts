import { describe, expect, it } from 'vitest'
import { formatCidr, parseCidr } from '../../../src/config/cidr'
import { MAX_CIDRS, MAX_LINE, parseRequest } from '../../../src/platform/helper/protocol'
import { LineSplitter, specToWire } from '../../../src/platform/helper/protocol-wire'

const goodSpec = { instanceId: 'ab12', listenPort: 4000, include: ['10.0.0.0/16'], exclude: [] as string[] }
const apply = (over: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): string =>
  JSON.stringify({ id: 7, op: 'apply', method: 'nft', spec: { ...goodSpec, ...spec }, ...over })

function rejects(line: string, re: RegExp, id: number | null = 7): void {
  let err: unknown
  try {
    parseRequest(line)
  } catch (e) {
    err = e
  }
  expect(err, line.slice(0, 80)).toMatchObject({ code: 'HELPER', id, message: expect.stringMatching(re) })
}

describe('parseRequest', () => {
  it('accepts the four ops and re-parses CIDRs (host bits cleared)', () => {
    expect(parseRequest('{"id":1,"op":"probe","method":"nat","ipv6":true}')).toEqual({ id: 1, op: 'probe', method: 'nat', ipv6: true })
    expect(parseRequest('{"id":2,"op":"revert"}')).toEqual({ id: 2, op: 'revert' })
    expect(parseRequest('{"id":3,"op":"cleanup"}')).toEqual({ id: 3, op: 'cleanup' })
    const r = parseRequest(apply({}, { include: ['10.1.2.3/16', 'fd00::1/64'], exclude: ['10.1.9.9'] }))
    expect(r).toEqual({
      id: 7, op: 'apply', method: 'nft',
      spec: { instanceId: 'ab12', listenPort: 4000, include: [parseCidr('10.1.0.0/16'), parseCidr('fd00::/64')], exclude: [parseCidr('10.1.9.9/32')] },
    })
  })

  it('round-trips specToWire', () => {
    const spec = { instanceId: 'z9', listenPort: 1, include: [parseCidr('0/0'), parseCidr('::/0')], exclude: [parseCidr('10.0.0.1')] }
    const r = parseRequest(JSON.stringify({ id: 0, op: 'apply', method: 'nat', spec: specToWire(spec) }))
    expect(r).toEqual({ id: 0, op: 'apply', method: 'nat', spec })
  })

  it('bad ids are rejected without an id to echo', () => {
    rejects('{"op":"revert"}', /id must be/, null)
    rejects('{"id":-1,"op":"revert"}', /id must be/, null)
    rejects('{"id":1.5,"op":"revert"}', /id must be/, null)
    rejects('{"id":"1","op":"revert"}', /id must be/, null)
    rejects('not json', /not JSON/, null)
    rejects('[1,2]', /not a JSON object/, null)
  })

  it('bad ops, methods, instance ids, ports', () => {
    rejects('{"id":7,"op":"exec"}', /op must be/)
    rejects(apply({ method: 'ipfw' }), /method must be/)
    rejects(apply({}, { instanceId: 'AB' }), /instanceId/)
    rejects(apply({}, { instanceId: 'a'.repeat(17) }), /instanceId/)
    rejects(apply({}, { instanceId: 'a b' }), /instanceId/)
    rejects(apply({}, { listenPort: 0 }), /listenPort/)
    rejects(apply({}, { listenPort: 65536 }), /listenPort/)
    rejects(apply({}, { listenPort: '80' }), /listenPort/)
    rejects('{"id":7,"op":"probe","method":"nft","ipv6":"yes"}', /ipv6/)
  })

  it('bad CIDRs, empty include, too many CIDRs', () => {
    rejects(apply({}, { include: ['10.0.0.0/33'] }), /include\[0\] is not a CIDR/)
    rejects(apply({}, { include: ['10.0.0.0/8', 'example.com'] }), /include\[1\]/)
    rejects(apply({}, { exclude: ['10.0.0.0/8; rm -rf /'] }), /exclude\[0\]/)
    rejects(apply({}, { include: [42] }), /include\[0\]/)
    rejects(apply({}, { include: '10.0.0.0/8' }), /must be an array/)
    rejects(apply({}, { include: [] }), /include is empty/)
    const many = Array.from({ length: MAX_CIDRS + 1 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`)
    rejects(apply({}, { include: many }), /more than 4096/)
  })

  it('unknown fields are rejected, at the top and inside spec', () => {
    rejects('{"id":7,"op":"revert","argv":["sh"]}', /unknown field "argv"/)
    rejects(apply({ revert: [] }), /unknown field "revert"/)
    rejects(apply({}, { apply: [['sh']] }), /unknown field "apply" in spec/)
  })

  it('a line over the cap is refused before parsing', () => {
    rejects(' '.repeat(MAX_LINE + 1), /line longer/, null)
  })
})

describe('parseRequest: spec.dns', () => {
  const dns = { servers: ['127.0.0.53', '10.0.0.2', 'FD98:0:0::53'], port: 5300, exemptSourcePorts: [40001, 40002] }
  const withDns = (over: Record<string, unknown> = {}): string => apply({}, { dns: { ...dns, ...over } })

  it('accepts a valid capture, servers canonical; absent dns stays absent', () => {
    const r = parseRequest(withDns())
    expect(r).toMatchObject({ op: 'apply', spec: { dns: { servers: ['127.0.0.53', '10.0.0.2', 'fd98::53'], port: 5300, exemptSourcePorts: [40001, 40002] } } })
    expect('spec' in r && 'dns' in r.spec).toBe(true)
    const plain = parseRequest(apply())
    expect('spec' in plain && 'dns' in plain.spec).toBe(false)
    expect(parseRequest(withDns({ exemptSourcePorts: [] }))).toMatchObject({ spec: { dns: { exemptSourcePorts: [] } } })
  })

  it('round-trips specToWire with dns', () => {
    const spec = {
      instanceId: 'z9', listenPort: 1, include: [parseCidr('10.0.0.0/8')], exclude: [],
      dns: { servers: ['127.0.0.53', 'fd98::53'], port: 65535, exemptSourcePorts: [1] },
    }
    const wire = specToWire(spec)
    expect(wire.dns).toEqual(spec.dns)
    expect(parseRequest(JSON.stringify({ id: 0, op: 'apply', method: 'nat', spec: wire }))).toEqual({ id: 0, op: 'apply', method: 'nat', spec })
    expect('dns' in specToWire({ ...spec, dns: undefined })).toBe(false)
  })

  it('bad servers', () => {
    rejects(withDns({ servers: ['dns.example'] }), /dns\.servers\[0\] is not an IP address/)
    rejects(withDns({ servers: ['10.0.0.2', '10.0.0.0/8'] }), /servers\[1\]/)
    rejects(withDns({ servers: ['fe80::1%eth0'] }), /servers\[0\]/)
    rejects(withDns({ servers: ['10.0.0.2 ; flush ruleset'] }), /servers\[0\]/)
    rejects(withDns({ servers: ['010.0.0.2'] }), /servers\[0\]/)
    rejects(withDns({ servers: [53] }), /servers\[0\]/)
    rejects(withDns({ servers: [] }), /servers must be an array of 1\.\.32/)
    rejects(withDns({ servers: '10.0.0.2' }), /servers must be an array/)
    const many = Array.from({ length: 33 }, (_, i) => `10.0.0.${i + 1}`)
    rejects(withDns({ servers: many }), /servers must be an array of 1\.\.32/)
    expect(() => parseRequest(withDns({ servers: many.slice(0, 32) }))).not.toThrow()
  })

  it('bad ports', () => {
    rejects(withDns({ port: 0 }), /dns\.port/)
    rejects(withDns({ port: 65536 }), /dns\.port/)
    rejects(withDns({ port: '5300' }), /dns\.port/)
    rejects(withDns({ port: 53.5 }), /dns\.port/)
    rejects(withDns({ exemptSourcePorts: [40001, 0] }), /exemptSourcePorts\[1\]/)
    rejects(withDns({ exemptSourcePorts: [70000] }), /exemptSourcePorts\[0\]/)
    rejects(withDns({ exemptSourcePorts: ['40001'] }), /exemptSourcePorts\[0\]/)
    rejects(withDns({ exemptSourcePorts: 40001 }), /exemptSourcePorts must be an array/)
    rejects(withDns({ exemptSourcePorts: Array.from({ length: 17 }, (_, i) => 40000 + i) }), /at most 16/)
  })

  it('missing or extra fields, wrong type', () => {
    rejects(withDns({ mark: 1 }), /unknown field "mark" in spec\.dns/)
    rejects(apply({}, { dns: { servers: ['10.0.0.2'], port: 5300 } }), /exemptSourcePorts must be an array/)
    rejects(apply({}, { dns: { servers: ['10.0.0.2'], exemptSourcePorts: [] } }), /dns\.port/)
    rejects(apply({}, { dns: null }), /spec\.dns must be an object/)
    rejects(apply({}, { dns: ['10.0.0.2'] }), /spec\.dns must be an object/)
  })

  it('gatewayPort: required with gateway, refused without, a port other than port; round-trips', () => {
    const r = parseRequest(apply({}, { gateway: true, dns: { ...dns, gatewayPort: 5301 } }))
    expect(r).toMatchObject({ spec: { gateway: true, dns: { port: 5300, gatewayPort: 5301 } } })
    if (r.op !== 'apply') throw new Error('not an apply')
    expect(specToWire(r.spec).dns).toEqual({ servers: ['127.0.0.53', '10.0.0.2', 'fd98::53'], port: 5300, gatewayPort: 5301, exemptSourcePorts: [40001, 40002] })
    expect(parseRequest(JSON.stringify({ id: 7, op: 'apply', method: 'nft', spec: specToWire(r.spec) }))).toEqual(r)
    // without gateway: absent, and not in the wire form either
    const plain = parseRequest(withDns())
    expect(plain.op === 'apply' && plain.spec.dns && 'gatewayPort' in plain.spec.dns).toBe(false)
    expect(specToWire(plain.op === 'apply' ? plain.spec : (undefined as never)).dns).not.toHaveProperty('gatewayPort')
    for (const g of [{}, { gateway: false }]) rejects(apply({}, { ...g, dns: { ...dns, gatewayPort: 5301 } }), /gatewayPort needs spec\.gateway true/)
    for (const bad of [undefined, 5300, 0, 65536, '5301', 1.5, null]) {
      rejects(apply({}, { gateway: true, dns: { ...dns, gatewayPort: bad } }), /gatewayPort must be an integer 1\.\.65535 other than spec\.dns\.port/)
    }
  })
})

describe('parseRequest: spec.gateway', () => {
  it('a boolean only; true is kept, false and absent both mean "no gateway"', () => {
    expect(parseRequest(apply({}, { gateway: true }))).toMatchObject({ spec: { gateway: true } })
    for (const line of [apply({}, { gateway: false }), apply()]) {
      const r = parseRequest(line)
      expect('spec' in r && 'gateway' in r.spec).toBe(false)
    }
    for (const bad of ['true', 1, null, {}, []]) rejects(apply({}, { gateway: bad }), /spec\.gateway must be a boolean/)
  })

  it('round-trips specToWire; sent only when true', () => {
    const spec = { instanceId: 'z9', listenPort: 1, include: [parseCidr('10.0.0.0/8')], exclude: [], gateway: true }
    const wire = specToWire(spec)
    expect(wire.gateway).toBe(true)
    expect(parseRequest(JSON.stringify({ id: 0, op: 'apply', method: 'nft', spec: wire }))).toEqual({ id: 0, op: 'apply', method: 'nft', spec })
    expect('gateway' in specToWire({ ...spec, gateway: false })).toBe(false)
  })
})

describe('parseRequest: gateway scope and owner', () => {
  const gw = (s: Record<string, unknown>): string => apply({}, { gateway: true, ...s })

  it('interfaces, sources and the owner uid are kept (sources canonical, duplicates dropped) and round-trip', () => {
    const r = parseRequest(gw({ gatewayInterfaces: ['br0', 'docker0', 'br0'], gatewaySources: ['172.17.1.2/16', '172.17.0.0/16', 'FD88::/64'], ownerUid: 1000 }))
    expect(r).toMatchObject({ spec: {
      gateway: true, gatewayInterfaces: ['br0', 'docker0'], gatewaySources: ['172.17.0.0/16', 'fd88::/64'].map(parseCidr), ownerUid: 1000,
    } })
    if (r.op !== 'apply') throw new Error('not an apply')
    expect(parseRequest(JSON.stringify({ id: 7, op: 'apply', method: 'nft', spec: specToWire(r.spec) }))).toEqual(r)
    // --owner-only needs no gateway; uid 0 is a uid
    expect(parseRequest(apply({}, { ownerUid: 0 }))).toMatchObject({ spec: { ownerUid: 0 } })
    const plain = parseRequest(apply())
    expect(Object.keys('spec' in plain ? plain.spec : {})).not.toContain('ownerUid')
  })

  it('interface names: what the kernel would take, minus anything nft or iptables reads as syntax', () => {
    for (const ok of ['eth0', 'br-1a2b3c4d5e6f', 'enp0s31f6', 'veth_x.10', 'a', 'x'.repeat(15)]) {
      expect(parseRequest(gw({ gatewayInterfaces: [ok] })), ok).toMatchObject({ spec: { gatewayInterfaces: [ok] } })
    }
    for (const bad of ['', '.', '..', 'x'.repeat(16), 'eth+', 'br0 ', 'a/b', 'a:1', '"br0"', 'br0;', 'br0\n', 'é', '-i', '.x', 1, null, ['br0']]) {
      rejects(gw({ gatewayInterfaces: [bad] }), /gatewayInterfaces\[0\] is not an interface name/)
    }
  })

  it('lists: non-empty, bounded, of the right type; only with gateway', () => {
    for (const bad of [[], 'br0', {}, null, Array.from({ length: 9 }, (_, i) => `br${i}`)]) {
      rejects(gw({ gatewayInterfaces: bad }), /gatewayInterfaces must be an array of 1\.\.8/)
    }
    for (const bad of [[], '10.0.0.0/8', Array.from({ length: 33 }, (_, i) => `10.${i}.0.0/16`)]) {
      rejects(gw({ gatewaySources: bad }), /gatewaySources must be an array of 1\.\.32/)
    }
    rejects(gw({ gatewaySources: ['10.0.0.0/8 ; flush'] }), /gatewaySources\[0\] is not a CIDR/)
    for (const g of [{}, { gateway: false }]) {
      rejects(apply({}, { ...g, gatewayInterfaces: ['br0'] }), /need spec\.gateway true/)
      rejects(apply({}, { ...g, gatewaySources: ['10.0.0.0/8'] }), /need spec\.gateway true/)
    }
  })

  it('the owner uid: an integer 0..2^32-2', () => {
    for (const bad of [-1, 1.5, '1000', 2 ** 32 - 1, null, true, [1]]) rejects(apply({}, { ownerUid: bad }), /ownerUid must be an integer/)
  })
})

describe('LineSplitter', () => {
  it('splits chunks into lines and drops an overlong line up to its newline', () => {
    const lines: string[] = []
    let tooLong = 0
    const s = new LineSplitter((l) => lines.push(l), () => tooLong++, 10)
    s.push('{"a"')
    s.push(':1}\n\n{"b":2}\n' + 'x'.repeat(8))
    s.push('y'.repeat(8))
    s.push('zzz\n{"c":3}\n')
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}'])
    expect(tooLong).toBe(1)
  })
})

describe('parseRequest: --fail-closed guard', () => {
  it('guard: instance id, CIDRs re-parsed, owner; nothing else; guard-state: a boolean', () => {
    const g = parseRequest(JSON.stringify({ id: 1, op: 'guard', spec: { instanceId: 'ab12', include: ['10.0.0.0/16'], exclude: ['10.0.0.5'], ownerUid: 1000 } }))
    expect(g.op === 'guard' && { ...g.spec, include: g.spec.include.map(formatCidr), exclude: g.spec.exclude.map(formatCidr) }).toEqual({
      instanceId: 'ab12', include: ['10.0.0.0/16'], exclude: ['10.0.0.5/32'], ownerUid: 1000,
    })
    const bad = (spec: unknown, re: RegExp) => expect(() => parseRequest(JSON.stringify({ id: 2, op: 'guard', spec }))).toThrow(re)
    bad({ instanceId: 'ab12', include: ['10.0.0.0/16'], exclude: [], argv: ['rm'] }, /unknown field "argv"/)
    bad({ instanceId: 'AB 12', include: ['10.0.0.0/16'], exclude: [] }, /instanceId/)
    bad({ instanceId: 'ab12', include: [], exclude: [] }, /include is empty/)
    bad({ instanceId: 'ab12', include: ['10.0.0.0/16; reboot'], exclude: [] }, /not a CIDR/)
    bad({ instanceId: 'ab12', include: ['10.0.0.0/16'], exclude: [], ownerUid: -1 }, /ownerUid/)
    expect(parseRequest(JSON.stringify({ id: 3, op: 'guard-state', closed: true }))).toEqual({ id: 3, op: 'guard-state', closed: true })
    expect(() => parseRequest(JSON.stringify({ id: 3, op: 'guard-state', closed: 'yes' }))).toThrow(/closed must be a boolean/)
    expect(() => parseRequest(JSON.stringify({ id: 3, op: 'toString' }))).toThrow(/op must be/)
  })
})
