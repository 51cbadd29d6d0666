import { describe, expect, it } from 'vitest'
import { needRootHint } from '../../../src/platform/helper/helper-launch'
import { assertSudoersWords, sudoersDropIn, sudoersRule } from '../../../src/platform/helper/sudoers'

const L = { execPath: '/usr/bin/node', helperPath: '/usr/lib/node_modules/subnet-tunnel/dist/platform/helper/helper-main.js' }

describe('sudoers rules', () => {
  it('the ordinary rule names node and the helper with no argument; the tun rule adds exactly --allow-tun', () => {
    expect(sudoersRule('alice', L)).toBe(`alice ALL=(root) NOPASSWD: /usr/bin/node ${L.helperPath}`)
    expect(sudoersRule('alice', L, true)).toBe(`alice ALL=(root) NOPASSWD: /usr/bin/node ${L.helperPath} --allow-tun`)
  })

  it('the drop-in: the ordinary rule active, the tun rule commented out, every other line a comment', () => {
    const text = sudoersDropIn('alice', L, '1.2.3')
    const lines = text.trimEnd().split('\n')
    expect(lines.filter((l) => !l.startsWith('#'))).toEqual([sudoersRule('alice', L)])
    expect(lines).toContain(`# ${sudoersRule('alice', L, true)}`)
    // "#include…" and "#<digits>" are not comments to sudo
    expect(lines.filter((l) => /^#(include|\d)/.test(l))).toEqual([])
    expect(text).toMatch(/Method tun is NOT granted by the rule above/)
    expect(text).toMatch(/each at least\n# \/8 or \/16, at most 2 \/8s or \/16s in all; no default route/)
    expect(text).toMatch(/visudo -cf/)
    expect(text.endsWith('\n')).toBe(true)
  })

  it('refuses words sudoers would read specially instead of escaping them', () => {
    for (const user of ['al ice', 'a,b', 'a:b', 'ALL=(root)', '%admin', '', '-x', 'a'.repeat(40)]) {
      expect(() => assertSudoersWords(user, L), user).toThrow(/cannot be written into a sudoers rule/)
    }
    for (const p of ['/opt/my node/bin/node', '/opt/a,b/node', '/opt/a:b', '/opt/a=b', '/opt/*/node', 'relative/node', '/opt/a\\b', '/opt/"x"']) {
      expect(() => assertSudoersWords('alice', { ...L, execPath: p }), p).toThrow(/characters sudoers reads specially/)
      expect(() => sudoersDropIn('alice', { ...L, helperPath: p }, '1')).toThrow(/characters sudoers reads specially/)
    }
    expect(() => assertSudoersWords('svc_deploy.1', { execPath: '/opt/node-v20.11.1/bin/node', helperPath: '/opt/st@2/x+y/helper-main.js' })).not.toThrow()
  })
})

describe('the NEED_ROOT hint', () => {
  it('a safe install: the rule (tun: the tun rule, said to be separate)', () => {
    expect(needRootHint('alice', L, { safe: true })).toMatch(new RegExp(`add a NOPASSWD rule .*: ${sudoersRule('alice', L).replace(/[()]/g, '\\$&')}$`))
    expect(needRootHint('alice', L, { safe: true }, true)).toMatch(/does not grant --method tun.*--allow-tun$/)
  })

  it('a path sudoers would misread: no rule, the reason', () => {
    const h = needRootHint('alice', { ...L, helperPath: '/opt/my tunnel/dist/platform/helper/helper-main.js' }, { safe: true })
    expect(h).toMatch(/^-D, --http-proxy, -L and -R need no root; for subnets, run with sudo \(no sudoers rule can name this install as it is: path .* has characters sudoers reads specially\)$/)
  })

  it('an unsafe install: no rule at all; which path, why, and what to do instead', () => {
    const h = needRootHint('alice', L, { safe: false, path: '/home/alice', reason: 'is owned by uid 1000, not root' }, true)
    expect(h).not.toMatch(/NOPASSWD:/)
    expect(h).toMatch(/^-D, --http-proxy, -L and -R need no root; for subnets, run with sudo\. A NOPASSWD rule would be unsafe here: \/home\/alice is owned by uid 1000, not root, so the rule would give root to whoever can change it; install it root-owned \(`npm pack`, then `sudo npm install -g \.\/subnet-tunnel-\*\.tgz`/)
  })
})
