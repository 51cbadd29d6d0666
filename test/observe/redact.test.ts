import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { redactArgv } from '../../src/observe/redact'

const r = (cmd: string): string => redactArgv(cmd.split(' ')).join(' ')

describe('redactArgv: credentials on client command lines', () => {
  it.each([
    ['curl -x http://alice:s3cret@127.0.0.1:8080 http://web/', 'curl -x http://…@127.0.0.1:8080 http://web/'],
    ['curl --proxy-user alice:s3cret http://web/', 'curl --proxy-user … http://web/'],
    ['curl -U alice:s3cret http://web/', 'curl -U alice:… http://web/'],
    ['curl -u alice:s3cret http://web/', 'curl -u alice:… http://web/'],
    ['curl --user=alice:s3cret http://web/', 'curl --user=alice:… http://web/'],
    ['curl -H Authorization:Bearer-s3cret http://web/', 'curl -H Authorization:… http://web/'],
    ['git clone https://ghp_s3cret@github.com/x/y', 'git clone https://…@github.com/x/y'],
    ['mysql -h 10.0.0.5 -ps3cret app', 'mysql -h 10.0.0.5 -p… app'],
    ['app --db-password s3cret --port 5', 'app --db-password … --port 5'],
    ['app --api-key=s3cret', 'app --api-key=…'],
    ['subnet-tunnel -r b -D 1080 --proxy-auth alice:s3cret', 'subnet-tunnel -r b -D 1080 --proxy-auth …'],
    ['socat - SOCKS5:127.0.0.1:10.0.0.5:22,socksuser=alice', 'socat - SOCKS5:127.0.0.1:10.0.0.5:22,socksuser=alice'],
  ])('%s', (cmd, want) => {
    expect(r(cmd)).toBe(want)
  })

  it('keeps ordinary command lines unchanged', () => {
    for (const cmd of ['sort -u file', 'python3 -u app.py', 'psql -h 10.0.1.20 -p 5432 app', 'curl -sS http://10.0.0.5/', 'ssh -p 22 user@host']) {
      expect(r(cmd)).toBe(cmd)
    }
  })

  it('property: a password in URL userinfo or after --password never survives', () => {
    const pw = fc.stringMatching(/^[A-Za-z0-9!$%^*_+-]{6,30}$/)
    fc.assert(
      fc.property(pw, fc.constantFrom('http', 'https', 'socks5h'), (secret, scheme) => {
        const argv = ['client', `${scheme}://user:${secret}@10.0.0.5:80/x`, '--password', secret, `--password=${secret}`]
        expect(redactArgv(argv).join(' ').includes(secret)).toBe(false)
      }),
    )
  })
})
