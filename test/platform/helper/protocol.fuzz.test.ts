/**
 * Property-based fuzzing of the privileged helper's request decoder (src/platform/helper/protocol.ts).
 * The helper runs as root, so: every malformed request — random JSON, wrong types, huge or
 * fractional numbers, CIDRs with junk, ports out of range, instance ids with shell
 * metacharacters, path separators or unicode — is refused with BadRequest (a TunnelError
 * 'HELPER'); every valid request is accepted; and what an accepted request turns into (the
 * firewall plan) carries only canonical CIDRs and the checked id, never the caller's text.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { formatCidr, tryParseCidr } from '../../../src/config/cidr'
import { firewallFor } from '../../../src/platform/firewall/choose-method'
import { BadRequest, parseRequest, type HelperRequest } from '../../../src/platform/helper/protocol'
import { LineSplitter, specToWire } from '../../../src/platform/helper/protocol-wire'
import { NASTY, anyText, tokenText } from '../../fuzz-helpers'

/** Parses; returns the request or the BadRequest. Anything else thrown fails the property. */
function decode(line: string): HelperRequest | BadRequest {
  try {
    return parseRequest(line)
  } catch (e) {
    if (e instanceof BadRequest && e.code === 'HELPER') return e
    throw e
  }
}

// ---- valid requests ----

const instanceId = fc.stringMatching(/^[a-z0-9]{1,16}$/)
const port = fc.integer({ min: 1, max: 65535 })
const cidrText = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, p]) => `${a}/${p}`),
  fc.ipV4(),
).filter((s) => s.length <= 64)
const wireDns = fc.record({
  servers: fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { minLength: 1, maxLength: 4 }),
  port,
  exemptSourcePorts: fc.array(port, { maxLength: 4 }),
})
const ifaceName = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,14}$/)
const wireSpec = fc.tuple(fc.record(
  {
    instanceId,
    listenPort: port,
    include: fc.array(cidrText, { minLength: 1, maxLength: 6 }),
    exclude: fc.array(cidrText, { maxLength: 4 }),
    dns: wireDns,
    gateway: fc.boolean(),
    gatewayInterfaces: fc.array(ifaceName, { minLength: 1, maxLength: 3 }),
    gatewaySources: fc.array(cidrText, { minLength: 1, maxLength: 3 }),
    ownerUid: fc.integer({ min: 0, max: 2 ** 32 - 2 }),
  },
  { requiredKeys: ['instanceId', 'listenPort', 'include', 'exclude'] },
), port).map(([s, gatewayPort]) => {
  // The gateway's scope, and the DNS interceptor's second port, exist only with gateway true.
  if (s.gateway === true) {
    return s.dns ? { ...s, dns: { ...s.dns, gatewayPort: gatewayPort === s.dns.port ? (gatewayPort % 65535) + 1 : gatewayPort } } : s
  }
  const { gatewayInterfaces: _i, gatewaySources: _s, ...rest } = s
  return rest
})
const method = fc.constantFrom('nat', 'nft')
const validRequest = fc.oneof(
  fc.record({ id: fc.nat(), op: fc.constant('probe'), method, ipv6: fc.boolean() }, { requiredKeys: ['id', 'op', 'method'] }),
  fc.record({ id: fc.nat(), op: fc.constant('apply'), method, spec: wireSpec }),
  fc.record({ id: fc.nat(), op: fc.constantFrom('revert', 'cleanup') }),
)

// ---- invalid values ----

const badNumber = fc.oneof(
  fc.constantFrom(0, -1, 65536, 1.5, 1e21, -0.5, 2 ** 53, Number.MAX_VALUE),
  fc.integer({ min: 65536 }),
  fc.integer({ max: 0 }),
  fc.double({ noInteger: true, noDefaultInfinity: true, noNaN: true }),
  fc.constantFrom('80', null, true, [80], { port: 80 }),
)
const badId = fc.oneof(
  fc.constantFrom('', 'a'.repeat(17), 'AB', 'a-b', 'a_b', 'a.b', '../x', 'x/y', 'a b', '1;rm', 'é', '\u0661', 'ab\n', 'ab\0'),
  fc.tuple(instanceId, fc.constantFrom(...NASTY), instanceId).map(([a, n, b]) => (a + n + b).slice(0, 20)),
  fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !/^[a-z0-9]{1,16}$/.test(s)),
  fc.constantFrom(1, null, ['ab'], { id: 'ab' }),
)
const badCidr = fc.oneof(
  cidrText.chain((c) => fc.constantFrom(`${c};reboot`, `${c} 1.2.3.4`, `${c}//8`, `$(${c})`, `${c}\n-j ACCEPT`, `${c},10.0.0.0/8`, `-${c}`, `${c}%eth0`)),
  fc.constantFrom('', '10.0.0.0/33', '::/129', '10.0.0', '256.0.0.1', '1.2.3.4/-1', '10.0.0.0/ 8', 'a'.repeat(65), '0x0a000000', '10.0.0.0/08a'),
  fc.constantFrom(10, null, ['10.0.0.0/8'], { cidr: '10.0.0.0/8' }),
)

/** A valid request with one field replaced by a bad value (or one unknown field added). */
const invalidRequest = fc
  .tuple(
    fc.record({ id: fc.nat(), method, spec: wireSpec }),
    fc.oneof(
      badId.map((v) => ['instanceId', v] as const),
      badNumber.map((v) => ['listenPort', v] as const),
      badCidr.map((v) => ['include', v] as const),
      badCidr.map((v) => ['exclude', v] as const),
      badNumber.map((v) => ['dns.port', v] as const),
      fc.oneof(badNumber, fc.constant(undefined)).map((v) => ['dns.gatewayPort', v] as const),
      badNumber.map((v) => ['dns.exempt', v] as const),
      badCidr.map((v) => ['dns.server', v] as const),
      fc.constantFrom(1, 'yes', null, {}).map((v) => ['gateway', v] as const),
      fc.oneof(badId.filter((v) => typeof v !== 'string' || !/^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,14}$/.test(v)),
        fc.constantFrom('.', '..', 'eth+', '-i', 'a'.repeat(16), '"br0"')).map((v) => ['gatewayInterfaces', [v]] as const),
      badCidr.map((v) => ['gatewaySources', [v]] as const),
      badNumber.filter((v) => !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 2 ** 32 - 2))
        .map((v) => ['ownerUid', v] as const),
      fc.constantFrom('__proto__', 'constructor', 'extra', 'Include', 'instanceid').map((k) => ['unknown', k] as const),
      fc.constantFrom('iptables', 'NFT', 'ipfw', '', null, 1).map((v) => ['method', v] as const),
    ),
  )
  .map(([req, [field, v]]) => {
    const spec: Record<string, unknown> = { ...req.spec, dns: { ...(req.spec.dns ?? { servers: ['10.0.0.2'], port: 53, exemptSourcePorts: [] }) } }
    const dns = spec.dns as Record<string, unknown>
    // Valid but for the one bad field: with gateway (set below for the scope fields), the DNS
    // interceptor's second port.
    const gateway = (): void => {
      spec.gateway = true
      dns.gatewayPort ??= dns.port === 54 ? 55 : 54
    }
    if (spec.gateway === true) gateway()
    const out: Record<string, unknown> = { id: req.id, op: 'apply', method: req.method, spec }
    if (field === 'include' || field === 'exclude') spec[field] = [...(spec[field] as string[]), v]
    else if (field === 'dns.port') dns.port = v
    else if (field === 'dns.gatewayPort') {
      gateway()
      dns.gatewayPort = v
    } else if (field === 'dns.exempt') dns.exemptSourcePorts = [v]
    else if (field === 'dns.server') dns.servers = [v]
    else if (field === 'unknown') Object.defineProperty(spec, v as string, { value: 1, enumerable: true })
    else if (field === 'method') out.method = v
    else if (field === 'gatewayInterfaces' || field === 'gatewaySources') {
      gateway()
      spec[field] = v
    }
    else spec[field] = v
    return JSON.stringify(out)
  })

/**
 * Characters allowed in planned argv tokens: nothing a shell or nft would read as syntax beyond
 * ours — plus our own '&' token (the DNS guard's `ct status & dnat`) and interface names as
 * quoted nft strings (one, or a set's elements joined by ',').
 */
const SAFE_TOKEN = /^(?:[A-Za-z0-9_.:/,{}\-;@!=]*|&|"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}"(?:,"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")*)$/

describe('helper protocol under fuzzing', () => {
  it('random text and random JSON: a request or BadRequest, never another error', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, fc.json(), fc.jsonValue().map((v) => JSON.stringify(v) ?? ''), tokenText(['{', '}', '"id":', '"op":', '"apply"', '"spec":', ',', '[', ']', '1e999', '-0', 'null'])), (line) => {
        const r = decode(line)
        if (r instanceof BadRequest) expect(r.id === null || Number.isSafeInteger(r.id)).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('valid requests are accepted, CIDRs canonical, and decoding is a fixed point of specToWire', () => {
    fc.assert(
      fc.property(validRequest, (req) => {
        const r = decode(JSON.stringify(req))
        if (r instanceof BadRequest) throw r
        expect(r.id).toBe(req.id)
        expect(r.op).toBe(req.op)
        if (r.op !== 'apply') return
        for (const c of [...r.spec.include, ...r.spec.exclude]) expect(tryParseCidr(formatCidr(c))).toEqual(c)
        const again = decode(JSON.stringify({ ...req, spec: specToWire(r.spec) }))
        expect(again).toEqual(r)
      }),
      { numRuns: 800 },
    )
  })

  it('one bad field anywhere in an apply is refused with the request id', () => {
    fc.assert(
      fc.property(invalidRequest, (line) => {
        const r = decode(line)
        expect(r).toBeInstanceOf(BadRequest)
        expect((r as BadRequest).id).toBe(JSON.parse(line).id)
      }),
      { numRuns: 1500 },
    )
  })

  it('an accepted apply plans argv made only of canonical CIDRs, numbers and our own tokens', () => {
    fc.assert(
      fc.property(fc.record({ id: fc.nat(), op: fc.constant('apply'), method, spec: wireSpec }), (req) => {
        const r = decode(JSON.stringify(req))
        if (r instanceof BadRequest || r.op !== 'apply') throw new Error('valid apply refused')
        const plan = firewallFor(r.method).plan(r.spec)
        const tokens = [...plan.apply, ...plan.revert].flat()
        // One expect per property run: thousands of tokens through expect() would take seconds.
        expect(tokens.filter((t) => !SAFE_TOKEN.test(t))).toEqual([])
        // The only name in argv is ours, built from the checked id.
        expect(new Set(tokens.filter((t) => t.includes('subnet-tunnel')))).toEqual(new Set([`subnet-tunnel-${req.spec.instanceId}`]))
      }),
      { numRuns: 500 },
    )
  })

  it('lines split into random chunks come out the same; overlong ones are reported, never buffered', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.string({ minLength: 60, maxLength: 90 })), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
        const max = 50
        const text = lines.join('\n') + '\n'
        const run = (chunks: string[]): string[] => {
          const got: string[] = []
          const s = new LineSplitter((l) => got.push(l), () => got.push('<too long>'), max)
          for (const c of chunks) s.push(c)
          return got
        }
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
        const chunks = [...points, text.length].map((p, i, all) => text.slice(i === 0 ? 0 : all[i - 1], p))
        const whole = run([text])
        expect(run(chunks)).toEqual(whole)
        // Each non-blank line is delivered once, or reported as too long.
        expect(whole).toEqual(lines.filter((l) => l.trim() !== '' || l.length > max).map((l) => (l.length > max ? '<too long>' : l)))
      }),
      { numRuns: 800 },
    )
  })
})
