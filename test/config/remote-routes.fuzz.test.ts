/**
 * Property-based fuzzing of the bastion route parsers and the auto-nets choice
 * (src/config/remote-routes*.ts, auto-nets.ts). The bastion is the attacker here: random text and
 * mutated real outputs either parse or are ignored line by line, nothing but REMOTE_EXEC is ever
 * thrown, what comes out is canonical and bounded, and every route is either chosen or dropped.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { chooseAutoNets, MAX_AUTO_NETS } from '../../src/config/auto-nets'
import { cidrsOverlap, formatCidr, parseCidr, tryParseCidr } from '../../src/config/cidr'
import { parseIpRoutes } from '../../src/config/remote-routes-ip'
import { MAX_SECTION_ROUTES, safeName, splitLines, tokens, type Line, type RemoteRoute } from '../../src/config/remote-routes-lines'
import { parseRouteTables } from '../../src/config/remote-routes-table'
import { parseBastionRoutes, ROUTES_MARKER, type BastionRoutes } from '../../src/config/remote-routes'
import { anyText, tokenText, typed } from '../fuzz-helpers'

const DIR = join(__dirname, 'fixtures/remote-routes')
const FIXTURES = readdirSync(DIR)
  .filter((f) => f.endsWith('.txt'))
  .map((f) => readFileSync(join(DIR, f), 'utf8'))

const SECTIONS = ['conn', 'ip4', 'ip6', 'netstat', 'route', 'route6', 'end', 'bogus']
const WORDS = [
  'default', 'via', 'dev', 'eth0', 'proto', 'kernel', 'scope', 'link', 'src', 'metric', 'linkdown', 'onlink', 'nexthop', 'weight',
  'blackhole', 'unreachable', 'local', 'multicast', 'inet6', 'expires', '1499sec', 'table', 'main', '10.20.0.0/16', '10.20.0.1',
  '0.0.0.0', '255.255.0.0', '255.0.255.0', '0.0.0.0/1', '::', '::/0', 'fd00:20::/64', 'fe80::1%eth0', 'fe80::%em0/64', '::ffff:1.2.3.4',
  '192.168.1', '10.44/16', 'link#2', '3e:22:fb:1:2:3', 'UG', 'UHS', 'U', '!', '!n', 'Un', 'UGRS', 'UHLWIi', 'lo0', '*', '-', '-1',
  'Destination', 'Gateway', 'Genmask', 'Flags', 'Netif', 'Next', 'Hop', 'Internet:', 'Internet6:', 'Kernel IP routing table',
  '\t', ' ', '  ', '\n', '\r\n', '\x1b[32m', '\x1b[0m', '\x00', '\u202e', '/', '%', '4294967296', '99999999999', '1e3',
]
const routeText = tokenText(WORDS, 16)
const section = fc.tuple(fc.constantFrom(...SECTIONS), fc.array(fc.oneof({ weight: 4, arbitrary: routeText }, { weight: 1, arbitrary: anyText }), { maxLength: 12 }))
const bastionOutput = fc.array(section, { maxLength: 6 }).map((s) => s.map(([name, lines]) => [`${ROUTES_MARKER}${name}`, ...lines].join('\n')).join('\n'))

const IP_RE = /^[0-9a-f:.]+$/
const localNets = fc.array(fc.oneof(fc.tuple(fc.ipV4(), fc.integer({ min: 8, max: 32 })), fc.tuple(fc.ipV6(), fc.integer({ min: 8, max: 128 }))), { maxLength: 3 })

/** Invariants of any parse result: canonical, validated, bounded. */
function checkRoutes(routes: readonly RemoteRoute[]): void {
  expect(routes.length).toBeLessThanOrEqual(2 * MAX_SECTION_ROUTES)
  for (const r of routes) {
    expect(tryParseCidr(formatCidr(r.net))).toEqual(r.net)
    if (r.gateway !== undefined) expect(r.gateway).toMatch(IP_RE)
    if (r.dev !== undefined) expect(safeName(r.dev)).toBe(r.dev)
    if (r.proto !== undefined) expect(safeName(r.proto)).toBe(r.proto)
    if (r.metric !== undefined) expect(Number.isInteger(r.metric) && r.metric >= 0 && r.metric <= 0xffffffff).toBe(true)
    expect(Number.isInteger(r.line) && r.line >= 1).toBe(true)
  }
}

/** Invariants of the choice: every route once, chosen disjoint and never the default or too broad. */
function checkChoice(routes: BastionRoutes, local: ReturnType<typeof parseCidr>[], dialled: string[]): void {
  const c = chooseAutoNets({ routes, bastionAddresses: dialled, localNetworks: local, maxNets: 20 })
  expect(c.chosen.length + c.dropped.length).toBe(routes.routes.length)
  const seen = new Set([...c.chosen.map((a) => a.route), ...c.dropped.map((d) => d.route)])
  expect(seen.size).toBe(routes.routes.length)
  expect(c.chosen.length).toBeLessThanOrEqual(20)
  for (const [i, a] of c.chosen.entries()) {
    expect(a.net.prefix).toBeGreaterThanOrEqual(8)
    expect(['unicast']).toContain(a.route.kind)
    for (const b of c.chosen.slice(i + 1)) expect(cidrsOverlap(a.net, b.net)).toBe(false)
    for (const l of local) expect(l.prefix <= a.net.prefix && cidrsOverlap(l, a.net)).toBe(false)
  }
  for (const e of c.excludes) expect(c.chosen.some((a) => a.net.prefix < e.net.prefix && cidrsOverlap(a.net, e.net))).toBe(true)
  for (const d of c.dropped) expect(d.detail).toMatch(/^[\x20-\x7e]{1,200}$/)
}

describe('bastion route output under fuzzing', () => {
  it('random sectioned text: routes or REMOTE_EXEC; canonical, bounded; every route chosen or dropped', () => {
    fc.assert(
      fc.property(bastionOutput, localNets, fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), anyText), { maxLength: 2 }), (text, nets, dialled) => {
        const r = typed(() => parseBastionRoutes(text), ['REMOTE_EXEC'])
        if (!r.ok) return
        checkRoutes(r.value.routes)
        for (const a of r.value.ownAddresses) expect(a).toMatch(IP_RE)
        checkChoice(r.value, nets.map(([a, p]) => parseCidr(`${a}/${p}`)), dialled)
      }),
      { numRuns: 1500 },
    )
  })

  it('mutated real outputs (cut, spliced, characters replaced, lines repeated) still parse or give REMOTE_EXEC', () => {
    const mutation = fc.oneof(
      fc.tuple(fc.constant('cut'), fc.nat(), fc.nat(200)),
      fc.tuple(fc.constant('insert'), fc.nat(), routeText),
      fc.tuple(fc.constant('replace'), fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })),
      fc.tuple(fc.constant('repeat'), fc.nat(), fc.integer({ min: 1, max: 20 })),
    )
    fc.assert(
      fc.property(fc.nat(FIXTURES.length - 1), fc.array(mutation, { minLength: 1, maxLength: 6 }), localNets, (n, muts, nets) => {
        let text = FIXTURES[n]
        for (const [kind, at, arg] of muts) {
          const i = text.length === 0 ? 0 : at % text.length
          if (kind === 'cut') text = text.slice(0, i) + text.slice(i + (arg as number))
          else if (kind === 'insert' || kind === 'replace') text = text.slice(0, i) + String(arg) + text.slice(i + (kind === 'replace' ? 1 : 0))
          else {
            const lines = text.split('\n')
            const j = at % lines.length
            lines.splice(j, 0, ...Array<string>(arg as number).fill(lines[j]))
            text = lines.join('\n')
          }
        }
        const r = typed(() => parseBastionRoutes(text), ['REMOTE_EXEC'])
        if (!r.ok) return
        checkRoutes(r.value.routes)
        checkChoice(r.value, nets.map(([a, p]) => parseCidr(`${a}/${p}`)), ['203.0.113.10'])
      }),
      { numRuns: 500 },
    )
  })

  it('line by line: garbage in place of one route line leaves every other route as it was', () => {
    // The route lines of each section of each fixture, with the parser that reads that section.
    const cases: { lines: Line[]; parse: (l: Line[]) => RemoteRoute[]; rows: number[] }[] = []
    for (const text of FIXTURES) {
      const all = splitLines(text)
      let start = -1
      let name = ''
      all.forEach((l, i) => {
        const end = l.text.startsWith(ROUTES_MARKER)
        if (end && start >= 0 && name !== 'conn') {
          const lines = all.slice(start, i)
          const family = name === 'ip4' ? 4 : 6
          const parse = name.startsWith('ip') ? (x: Line[]) => parseIpRoutes(x, family).routes : (x: Line[]) => parseRouteTables(x).routes
          const routeLines = parse(lines).map((r) => r.line)
          // Rows followed by a nexthop line belong with it: not single lines.
          const rows = routeLines.filter((no) => !/^\s/.test(all[no]?.text ?? ''))
          if (rows.length > 0) cases.push({ lines, parse, rows })
        }
        if (end) [start, name] = [i + 1, l.text.slice(ROUTES_MARKER.length)]
      })
    }
    const garbage = fc.oneof(routeText, anyText).filter((g) => {
      // As the parser sees the line (colour codes stripped): a garbage line that reads as a
      // header or a section title is not garbage to it.
      const seen = splitLines(g, 0)[0]!.text
      const t = tokens(seen)
      return !/[\r\n]/.test(g) && !/^\s/.test(g) && !/^\s/.test(seen) && t[0] !== 'Destination' && !(t.length === 1 && t[0]!.endsWith(':'))
    })
    fc.assert(
      fc.property(fc.nat(cases.length - 1), fc.nat(), garbage, (c, pick, g) => {
        const { lines, parse, rows } = cases[c]
        const no = rows[pick % rows.length]
        const before = parse(lines).filter((r) => r.line !== no)
        const after = parse(lines.map((l) => (l.no === no ? splitLines(g, no)[0] : l))).filter((r) => r.line !== no)
        expect(after).toEqual(before)
      }),
      { numRuns: 1500 },
    )
  })

  it('a flood of routes is cut at the section cap and the cap on chosen networks holds', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_SECTION_ROUTES - 5, max: MAX_SECTION_ROUTES + 50 }), (n) => {
        const lines = Array.from({ length: n }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24 via 10.255.0.1 dev eth0`)
        const r = parseBastionRoutes([`${ROUTES_MARKER}ip4`, ...lines].join('\n'))
        expect(r.routes.length).toBe(Math.min(n, MAX_SECTION_ROUTES))
        expect(r.truncated).toBe(n > MAX_SECTION_ROUTES)
        const c = chooseAutoNets({ routes: r, bastionAddresses: [], localNetworks: [] })
        expect(c.chosen).toHaveLength(MAX_AUTO_NETS)
        expect(c.dropped.filter((d) => d.reason === 'limit')).toHaveLength(r.routes.length - MAX_AUTO_NETS)
      }),
      { numRuns: 5 },
    )
  })
})
