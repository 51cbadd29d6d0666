import { describe, expect, it } from 'vitest'
import { parseCidr } from '../../src/config/cidr'
import { SplitDnsPolicy, reverseZones } from '../../src/dns/policy'

describe('SplitDnsPolicy', () => {
  it('tunnels everything without domains', () => {
    const p = new SplitDnsPolicy([])
    expect(p.route('www.google.com')).toBe('tunnel')
    expect(p.tunnelsEverything).toBe(true)
  })

  it('matches suffixes on label boundaries, case-insensitively, with or without trailing dots', () => {
    const p = new SplitDnsPolicy(['Corp.Internal.', 'svc'])
    expect(p.route('corp.internal')).toBe('tunnel')
    expect(p.route('a.corp.internal')).toBe('tunnel')
    expect(p.route('A.B.CORP.INTERNAL.')).toBe('tunnel')
    expect(p.route('xcorp.internal')).toBe('local')
    expect(p.route('corp.internal.evil.com')).toBe('local')
    expect(p.route('internal')).toBe('local')
    expect(p.route('k8s.svc')).toBe('tunnel')
    expect(p.route('.')).toBe('local')
    expect(p.route('www.example.com')).toBe('local')
  })

  it('does not treat an escaped dot inside a label as a boundary', () => {
    expect(new SplitDnsPolicy(['corp.internal']).route('a\\046corp.internal')).toBe('local')
    expect(new SplitDnsPolicy(['corp.internal']).route('x.a\\046corp.internal')).toBe('local')
  })

  it('the root domain tunnels everything', () => {
    expect(new SplitDnsPolicy(['.']).route('anything.example')).toBe('tunnel')
  })

  it('tunnels extra suffixes (reverse zones) when domains are given', () => {
    const p = new SplitDnsPolicy(['corp.internal'], reverseZones(parseCidr('10.0.0.0/16')))
    expect(p.route('5.1.0.10.in-addr.arpa')).toBe('tunnel')
    expect(p.route('5.1.1.10.in-addr.arpa')).toBe('local')
  })
})

describe('reverseZones', () => {
  it('octet-aligned IPv4', () => {
    expect(reverseZones(parseCidr('10.0.0.0/8'))).toEqual(['10.in-addr.arpa'])
    expect(reverseZones(parseCidr('192.168.1.0/24'))).toEqual(['1.168.192.in-addr.arpa'])
    expect(reverseZones(parseCidr('10.1.2.3'))).toEqual(['3.2.1.10.in-addr.arpa'])
  })

  it('non-aligned IPv4 expands to the covering zones', () => {
    const z = reverseZones(parseCidr('172.16.0.0/12'))
    expect(z).toHaveLength(16)
    expect(z[0]).toBe('16.172.in-addr.arpa')
    expect(z[15]).toBe('31.172.in-addr.arpa')
  })

  it('IPv6 on nibble boundaries, and expansion in between', () => {
    expect(reverseZones(parseCidr('fd00:1234::/32'))).toEqual(['4.3.2.1.0.0.d.f.ip6.arpa'])
    expect(reverseZones(parseCidr('fd00::/7'))).toEqual(['c.f.ip6.arpa', 'd.f.ip6.arpa'])
  })

  it('never returns a zone for /0', () => {
    expect(reverseZones(parseCidr('0.0.0.0/0'))).toEqual([])
  })
})
