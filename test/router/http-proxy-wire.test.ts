import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ChunkedScanner,
  buildClientResponse,
  buildOriginRequest,
  parseAuthority,
  parseBasicAuth,
  parseRequestHead,
  parseResponseHead,
  parseTarget,
  requestFraming,
  responseFraming,
} from '../../src/router/http-proxy-wire'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')

describe('request head', () => {
  it('parses an absolute-URI request with CRLF and keeps the body bytes unconsumed', () => {
    const text = 'GET http://web.corp:8080/a?b=1 HTTP/1.1\r\nHost: web.corp:8080\r\nX-A:  v \r\n\r\nBODY'
    const r = parseRequestHead(b(text))
    expect(r).toEqual({
      status: 'done',
      head: { method: 'GET', target: 'http://web.corp:8080/a?b=1', minor: 1, headers: [['Host', 'web.corp:8080'], ['X-A', 'v']] },
      consumed: text.length - 4,
    })
  })
  it('tolerates bare LF and leading empty lines', () => {
    const r = parseRequestHead(b('\r\n\nCONNECT [::1]:443 HTTP/1.0\nHost: x\n\n'))
    expect(r).toMatchObject({ status: 'done', head: { method: 'CONNECT', target: '[::1]:443', minor: 0 } })
  })
  it('asks for more on every strict prefix', () => {
    const text = 'POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n'
    for (let i = 0; i < text.length; i++) expect(parseRequestHead(b(text.slice(0, i))).status).toBe('more')
  })
  it('rejects folding, space before colon, stray CR and bad request lines with 400', () => {
    for (const t of [
      'GET http://a/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nX : a\r\n\r\n',
      'GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n',
      'GET http://a/\r\n\r\n',
      'GET  http://a/ HTTP/1.1\r\n\r\n',
      'GET http://a/ HTTP/2.0\r\n\r\n',
    ]) {
      expect(parseRequestHead(b(t))).toMatchObject({ status: 'bad', code: 400 })
    }
  })
  it('limits the head size with 431', () => {
    const big = 'GET http://a/ HTTP/1.1\r\n' + 'X: '.padEnd(70_000, 'a') + '\r\n\r\n'
    expect(parseRequestHead(b(big))).toMatchObject({ status: 'bad', code: 431 })
    expect(parseRequestHead(b(big.slice(0, 66_000)))).toMatchObject({ status: 'bad', code: 431 })
  })
})

describe('targets', () => {
  it('CONNECT authority, IPv6 in brackets', () => {
    expect(parseTarget('CONNECT', '[fd00:0::1]:443')).toEqual({ kind: 'connect', host: 'fd00::1', port: 443 })
    expect(parseTarget('CONNECT', 'db.corp:5432')).toEqual({ kind: 'connect', host: 'db.corp', port: 5432 })
    expect(parseTarget('CONNECT', 'db.corp')).toHaveProperty('error')
    expect(parseTarget('CONNECT', 'a:99999')).toHaveProperty('error')
  })
  it('absolute URIs: default port, origin-form path, userinfo dropped', () => {
    expect(parseTarget('GET', 'http://web')).toEqual({ kind: 'forward', host: 'web', port: 80, authority: 'web', path: '/' })
    expect(parseTarget('GET', 'HTTP://u:p@[::1]:8080?x#frag')).toEqual({ kind: 'forward', host: '::1', port: 8080, authority: '[::1]:8080', path: '/?x' })
    expect(parseTarget('GET', 'https://web/')).toMatchObject({ error: expect.stringContaining('CONNECT') })
    expect(parseTarget('GET', '/index.html')).toMatchObject({ error: expect.stringContaining('absolute') })
    expect(parseAuthority('a b:80')).toBeUndefined()
  })
})

describe('framing', () => {
  it('requests: chunked, length, none; CL+TE and conflicting CL refused', () => {
    expect(requestFraming([['Transfer-Encoding', 'gzip, chunked']])).toEqual({ kind: 'chunked' })
    expect(requestFraming([['Content-Length', '12']])).toEqual({ kind: 'length', length: 12 })
    expect(requestFraming([['Content-Length', '12, 12']])).toEqual({ kind: 'length', length: 12 })
    expect(requestFraming([])).toEqual({ kind: 'none' })
    expect(requestFraming([['Content-Length', '1'], ['Transfer-Encoding', 'chunked']])).toHaveProperty('error')
    expect(requestFraming([['Content-Length', '1'], ['Content-Length', '2']])).toHaveProperty('error')
    expect(requestFraming([['Content-Length', '-1']])).toHaveProperty('error')
    expect(requestFraming([['Transfer-Encoding', 'gzip']])).toHaveProperty('error')
  })
  it('responses depend on method and status', () => {
    expect(responseFraming('HEAD', 200, [['Content-Length', '10']])).toEqual({ kind: 'none' })
    expect(responseFraming('GET', 304, [])).toEqual({ kind: 'none' })
    expect(responseFraming('GET', 200, [])).toEqual({ kind: 'close' })
    expect(responseFraming('GET', 200, [['Transfer-Encoding', 'chunked']])).toEqual({ kind: 'chunked' })
  })
})

describe('ChunkedScanner', () => {
  const body = '4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\nin\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n'
  it('finds the end, byte by byte, with extensions, bare LF and trailers', () => {
    const s = new ChunkedScanner()
    const all = b(body + 'NEXT')
    let used = 0
    for (let i = 0; i < all.length && !s.done; i++) used += s.feed(all.subarray(i, i + 1))
    expect(s.error).toBeUndefined()
    expect(s.done).toBe(true)
    expect(used).toBe(body.length)
  })
  it('reports the body length within one coalesced buffer', () => {
    const s = new ChunkedScanner()
    expect(s.feed(b(body + 'GET /next'))).toBe(body.length)
  })
  it('flags malformed framing', () => {
    const bad1 = new ChunkedScanner()
    bad1.feed(b('zz\r\n'))
    expect(bad1.error).toBeDefined()
    const bad2 = new ChunkedScanner()
    bad2.feed(b('2\r\nabc\r\n'))
    expect(bad2.error).toBeDefined()
  })
})

describe('rewriting', () => {
  it('sends origin-form, replaces Host, drops hop-by-hop and Connection-listed fields', () => {
    const r = parseRequestHead(
      b(
        'GET http://web:8080/p?q HTTP/1.1\r\nHost: wrong\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n' +
          'Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n',
      ),
    )
    if (r.status !== 'done') throw new Error('parse')
    const t = parseTarget(r.head.method, r.head.target)
    if ('error' in t || t.kind !== 'forward') throw new Error('target')
    expect(buildOriginRequest(r.head, t).toString()).toBe(
      'GET /p?q HTTP/1.1\r\nHost: web:8080\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
    )
  })
  it('keeps Upgrade for a WebSocket handshake', () => {
    const r = parseRequestHead(b('GET http://ws/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'))
    if (r.status !== 'done') throw new Error('parse')
    const t = parseTarget('GET', 'http://ws/') as Extract<ReturnType<typeof parseTarget>, { kind: 'forward' }>
    expect(buildOriginRequest(r.head, t).toString()).toContain('Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
  })
  it('response to the client: own version, hop-by-hop removed, close when ending', () => {
    const r = parseResponseHead(b('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n'))
    if (r.status !== 'done') throw new Error('parse')
    expect(buildClientResponse(r.head, false).toString()).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n')
    expect(buildClientResponse(r.head, true).toString()).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n')
  })
  it('decodes Basic proxy credentials', () => {
    const v = 'Basic ' + Buffer.from('alice:pa:ss').toString('base64')
    expect(parseBasicAuth(v)).toEqual({ username: 'alice', password: 'pa:ss' })
    expect(parseBasicAuth('Bearer abc')).toBeUndefined()
    expect(parseBasicAuth(undefined)).toBeUndefined()
  })
})

describe('fuzzing', () => {
  it('random bytes never throw in any parser', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.string({ maxLength: 80 }), (a, s) => {
        const buf = Buffer.from(a)
        parseRequestHead(buf)
        parseResponseHead(buf)
        const sc = new ChunkedScanner()
        expect(sc.feed(buf)).toBeLessThanOrEqual(buf.length)
        parseTarget('GET', s)
        parseTarget('CONNECT', s)
        parseBasicAuth(s)
      }),
      { numRuns: 3000 },
    )
  })
  it('HTTP-looking garbage never throws', () => {
    const piece = fc.constantFrom('GET ', 'http://', 'HTTP/1.1', '\r\n', '\n', ':', ' ', 'Host', '[', ']', '\0', '\t', 'Content-Length: ', '0', 'chunked')
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
        const r = parseRequestHead(b(parts.join('')))
        if (r.status === 'done') parseTarget(r.head.method, r.head.target)
      }),
      { numRuns: 3000 },
    )
  })
  const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/)
  const value = fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/)
  it('valid requests round-trip, split anywhere', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'),
        fc.domain(),
        fc.integer({ min: 1, max: 65535 }),
        fc.webPath(),
        fc.array(fc.tuple(token, value), { maxLength: 8 }),
        fc.boolean(),
        fc.nat(),
        (method, host, port, path, headers, lf, cut) => {
          const eol = lf ? '\n' : '\r\n'
          const text = `${method} http://${host}:${port}${path} HTTP/1.1${eol}${headers.map(([k, v]) => `${k}: ${v}${eol}`).join('')}${eol}`
          const whole = b(text)
          const r = parseRequestHead(whole)
          expect(r).toMatchObject({ status: 'done', consumed: whole.length, head: { method, headers } })
          if (r.status !== 'done') return
          expect(parseTarget(method, r.head.target)).toMatchObject({ kind: 'forward', host, port, path: path === '' ? '/' : path })
          expect(parseRequestHead(whole.subarray(0, cut % whole.length)).status).toBe('more')
        },
      ),
      { numRuns: 1500 },
    )
  })
  it('chunked bodies of any shape end exactly where they should, however split', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 5 }), (chunks, cuts) => {
        const enc = Buffer.concat([
          ...chunks.flatMap((c) => [b(c.length.toString(16) + '\r\n'), Buffer.from(c), b('\r\n')]),
          b('0\r\n\r\n'),
        ])
        const all = Buffer.concat([enc, b('rest')])
        const points = [...new Set(cuts.map((c) => c % all.length))].sort((x, y) => x - y)
        const s = new ChunkedScanner()
        let used = 0
        let prev = 0
        for (const p of [...points, all.length]) {
          if (!s.done) used += s.feed(all.subarray(prev, p))
          prev = p
        }
        expect(s.error).toBeUndefined()
        expect(s.done).toBe(true)
        expect(used).toBe(enc.length)
      }),
      { numRuns: 1500 },
    )
  })
})
