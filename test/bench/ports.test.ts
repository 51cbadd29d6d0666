import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { parsePortRange, parseListeningPorts, pickPort, portBook } = require('../../scripts/bench-lib/ports.js')
const { EPHEMERAL_RANGE } = require('../../scripts/bench-lib/testbed.js')

// `ss -Hltnu` in a testbed's private namespace (iproute2 6.1): with -t and -u, a Netid column first.
const SS_PRIVATE = [
  'udp UNCONN 0      0         10.251.0.10:53   0.0.0.0:*',
  'udp UNCONN 0      0      [fd00:251::10]:53      [::]:*',
  'tcp LISTEN 0      32        10.251.0.10:53   0.0.0.0:*',
  'tcp LISTEN 0      1024                *:9000       *:*',
  'tcp LISTEN 0      1024                *:80         *:*',
  'tcp LISTEN 0      4096                *:5201       *:*',
].join('\n')
// `ss -Hltn` (no Netid column), with an interface-scoped address.
const SS_TCP_ONLY = 'LISTEN 0      32     127.0.0.53%lo:53 0.0.0.0:*\nLISTEN 0      128       10.250.0.1:22 0.0.0.0:*\n'

describe('parsePortRange', () => {
  it('reads /proc/sys/net/ipv4/ip_local_port_range', () => {
    expect(parsePortRange('32768\t60999\n')).toEqual([32768, 60999])
    expect(parsePortRange('16384 65535')).toEqual([16384, 65535])
  })

  it('refuses anything else', () => {
    expect(() => parsePortRange('')).toThrow()
    expect(() => parsePortRange('60999 32768')).toThrow(/bad range/)
    expect(() => parsePortRange('1 70000')).toThrow(/bad range/)
  })
})

describe('parseListeningPorts', () => {
  it('finds the local port with and without the Netid column, for v4, v6, scoped and wildcard addresses', () => {
    expect([...parseListeningPorts(SS_PRIVATE)].sort((a, b) => a - b)).toEqual([53, 80, 5201, 9000])
    expect([...parseListeningPorts(SS_TCP_ONLY)].sort((a, b) => a - b)).toEqual([22, 53])
    expect(parseListeningPorts('').size).toBe(0)
  })
})

describe('pickPort', () => {
  it('takes the highest free port below the ephemeral range', () => {
    expect(pickPort([16384, 65535])).toBe(16383)
    expect(pickPort([16384, 65535], new Set([16383, 16382]))).toBe(16381)
    expect(pickPort([32768, 60999])).toBe(32767)
  })

  it('never returns a port inside the range, whatever is taken', () => {
    const range = [2000, 64000]
    const taken = new Set<number>()
    for (let i = 0; i < 1500; i++) {
      const p = pickPort(range, taken)
      expect(p < range[0] || p > range[1]).toBe(true)
      expect(taken.has(p)).toBe(false)
      taken.add(p)
    }
  })

  it('goes above the range when nothing is free below it', () => {
    expect(pickPort([1024, 60999])).toBe(61000)
    expect(pickPort([1100, 60999], new Set(Array.from({ length: 76 }, (_, i) => 1024 + i)))).toBe(61000)
  })

  it('throws when the range leaves no port outside it (the widest range there is)', () => {
    expect(() => pickPort([1024, 65535])).toThrow(/no free port outside the ephemeral range 1024-65535/)
  })

  it('the range the bench sets in its namespaces leaves room below it', () => {
    const range = parsePortRange(EPHEMERAL_RANGE)
    expect(range[0] - 1024).toBeGreaterThan(10_000)
    expect(pickPort(range)).toBe(range[0] - 1)
  })
})

describe('portBook', () => {
  type Argv = string[]
  const fake = (range: string, listening: Record<string, string>) => {
    const calls: Argv[] = []
    const run = async (argv: Argv) => {
      calls.push(argv)
      const ns = argv[3]
      if (argv.includes('cat')) return { code: 0, stdout: range, stderr: '' }
      if (argv.includes('ss')) return { code: 0, stdout: listening[ns] || '', stderr: '' }
      return { code: 1, stdout: '', stderr: 'unexpected' }
    }
    return { run, calls }
  }
  const tb = { ns: { client: 'st-x-client', bastion: 'st-x-bastion' } }

  it('reads the range inside the namespace, skips what listens there, never hands a port out twice', async () => {
    const f = fake('16384\t65535\n', { 'st-x-client': 'tcp LISTEN 0 128 127.0.0.1:16383 0.0.0.0:*\n' })
    const book = portBook(tb, f.run)
    expect(await book.take('client')).toBe(16382)
    expect(await book.take('client')).toBe(16381)
    // Another namespace has its own ports.
    expect(await book.take('bastion')).toBe(16383)
    expect(book.ranges()).toEqual({ client: [16384, 65535], bastion: [16384, 65535] })
    expect(f.calls[0]).toEqual(['ip', 'netns', 'exec', 'st-x-client', 'cat', '/proc/sys/net/ipv4/ip_local_port_range'])
    expect(f.calls.filter((c) => c.includes('cat')).length).toBe(2)
  })

  it('fails loudly when the range cannot be read', async () => {
    const book = portBook(tb, async () => ({ code: 1, stdout: '', stderr: 'Cannot open network namespace' }))
    await expect(book.take('client')).rejects.toThrow(/Cannot open network namespace/)
  })
})
