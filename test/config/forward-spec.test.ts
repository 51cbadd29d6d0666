import { describe, expect, it } from 'vitest'
import { formatForward, isNonLoopbackBind, parseForward } from '../../src/config/forward-spec'
import { TunnelError } from '../../src/errors'

describe('parseForward: valid specs (OpenSSH parse_forward semantics)', () => {
  const table: [kind: 'local' | 'remote', text: string, bindHost: string, bindPort: number, host: string, hostPort: number][] = [
    // no bind address: loopback (OpenSSH: GatewayPorts no for -L; "localhost" sent for -R)
    ['local', '5432:db.internal:5432', 'localhost', 5432, 'db.internal', 5432],
    ['remote', '8080:localhost:3000', 'localhost', 8080, 'localhost', 3000],
    ['remote', '0:127.0.0.1:3000', 'localhost', 0, '127.0.0.1', 3000],
    // explicit bind address
    ['local', '127.0.0.1:8080:10.0.0.5:80', '127.0.0.1', 8080, '10.0.0.5', 80],
    ['local', '192.168.1.10:8080:web:80', '192.168.1.10', 8080, 'web', 80],
    ['remote', '0.0.0.0:8080:127.0.0.1:80', '0.0.0.0', 8080, '127.0.0.1', 80],
    ['remote', '127.0.0.1:0:127.0.0.1:3000', '127.0.0.1', 0, '127.0.0.1', 3000],
    ['local', 'localhost:8080:web:80', 'localhost', 8080, 'web', 80],
    // * or empty: every address
    ['local', '*:8080:web:80', '*', 8080, 'web', 80],
    ['local', ':8080:web:80', '*', 8080, 'web', 80],
    ['remote', '*:9000:localhost:9000', '*', 9000, 'localhost', 9000],
    ['remote', ':9000:localhost:9000', '*', 9000, 'localhost', 9000],
    // IPv6 in brackets, anywhere
    ['local', '[::1]:8080:[fd00::1]:80', '::1', 8080, 'fd00::1', 80],
    ['local', '8080:[fd00::1]:80', 'localhost', 8080, 'fd00::1', 80],
    ['remote', '[::]:8080:[::1]:22', '::', 8080, '::1', 22],
    ['local', '[*]:8080:h:1', '*', 8080, 'h', 1],
    // leading spaces skipped, backslash escapes a character, boundaries
    ['local', '  1:h:65535', 'localhost', 1, 'h', 65535],
    ['local', '65535:h\\.x:1', 'localhost', 65535, 'h.x', 1],
  ]
  it.each(table)('%s %s', (kind, text, bindHost, bindPort, host, hostPort) => {
    expect(parseForward(kind, text)).toEqual({ kind, bindHost, bindPort, host, hostPort })
  })
})

describe('parseForward: invalid specs → USAGE with the syntax as hint', () => {
  const table: [kind: 'local' | 'remote', text: string, why: RegExp][] = [
    ['local', '', /expected \[bind_address:\]port:host:hostport/],
    ['local', '8080', /missing host:hostport/],
    ['local', '8080:db', /missing host:hostport/],
    ['remote', '8080', /dynamic remote forwarding/],
    ['local', '8080:db:', /bad hostport ""/],
    ['local', 'abc:db:80', /bad port "abc"/],
    ['local', '70000:db:80', /bad port "70000"/],
    ['local', '-1:db:80', /bad port "-1"/],
    ['local', '0:db:80', /port 0 is only meaningful for -R/],
    ['local', '8080:db:0', /bad hostport "0"/],
    ['remote', '8080:db:http', /bad hostport "http"/],
    ['local', '8080::80', /bad host ""/],
    ['local', '::1:8080:fd00::1:80', /too many ":" fields.*brackets/],
    ['local', '[::1:8080:h:80', /expected/],
    ['local', '[::1]x:8080:h:80', /expected/],
    ['local', '8080:/run/db.sock', /Unix-domain socket/],
    ['local', '/tmp/s:db:80', /Unix-domain socket/],
    ['local', '8080/db/80', /Unix-domain socket/],
    ['local', 'a b:8080:h:80', /bad bind address/],
    ['local', '8080:h:80\\', /expected/],
    ['local', `8080:${'h'.repeat(1100)}:80`, /too long/],
  ]
  it.each(table)('%s "%s"', (kind, text, why) => {
    let err: unknown
    try {
      parseForward(kind, text)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TunnelError)
    const te = err as TunnelError
    expect(te.code).toBe('USAGE')
    const flag = kind === 'local' ? '-L' : '-R'
    expect(te.message.startsWith(`${flag} "${text}": `)).toBe(true)
    expect(te.message).toMatch(why)
    expect(te.hint).toContain(`${flag} [bind_address:]port:host:hostport`)
  })
})

describe('helpers', () => {
  it('isNonLoopbackBind', () => {
    const nl = (bindHost: string) => isNonLoopbackBind({ bindHost })
    expect(nl('localhost')).toBe(false)
    expect(nl('127.0.0.1')).toBe(false)
    expect(nl('127.1.2.3')).toBe(false)
    expect(nl('::1')).toBe(false)
    expect(nl('*')).toBe(true)
    expect(nl('0.0.0.0')).toBe(true)
    expect(nl('::')).toBe(true)
    expect(nl('192.168.1.1')).toBe(true)
    expect(nl('127.example.com')).toBe(true)
  })

  it('formatForward round-trips through parseForward', () => {
    for (const [kind, text] of [
      ['local', '5432:db:5432'],
      ['local', '[::1]:8080:[fd00::1]:80'],
      ['remote', '*:0:localhost:3000'],
      ['remote', '0.0.0.0:8080:127.0.0.1:80'],
    ] as const) {
      const spec = parseForward(kind, text)
      const shown = formatForward(spec)
      expect(shown).toBe(`${kind === 'local' ? '-L' : '-R'} ${text}`)
      expect(parseForward(kind, shown.slice(3))).toEqual(spec)
    }
  })
})
