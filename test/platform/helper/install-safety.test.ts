// Is a NOPASSWD rule for the helper safe on this install? A fake file system for every case, then
// (root only) a real throwaway tree.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkInstallSafety, realSafetyFs, type SafetyFs, type SafetyStat } from '../../../src/platform/helper/install-safety'

type Node = Partial<SafetyStat> & { link?: string; noRead?: boolean }

/** A file system from a table of paths; parents are implied root-owned 0755 directories. */
function fakeFs(table: Record<string, Node>, writableByMe: string[] = []): SafetyFs & { lstats: string[] } {
  const nodes = new Map<string, SafetyStat & { link?: string; noRead?: boolean }>()
  const put = (p: string, n: Node): void => {
    nodes.set(p, { uid: 0, gid: 0, mode: n.isDirectory === false || n.link ? 0o644 : 0o755, isDirectory: !n.link, isSymbolicLink: !!n.link, ...n })
  }
  for (const [p, n] of Object.entries(table)) {
    for (let d = path.dirname(p); ; d = path.dirname(d)) {
      if (!nodes.has(d) && !(d in table)) put(d, { isDirectory: true })
      if (d === '/') break
    }
    put(p, n)
  }
  const lstats: string[] = []
  const resolve = (p: string): string => {
    let out = '/'
    for (const part of p.split('/').filter(Boolean)) {
      const next = path.join(out, part)
      const n = nodes.get(next)
      if (!n) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
      out = n.link ? resolve(path.resolve(path.dirname(next), n.link)) : next
    }
    return out
  }
  return {
    lstats,
    lstat(p) {
      lstats.push(p)
      const n = nodes.get(p)
      if (!n) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
      return n
    },
    realpath: resolve,
    readdir(p) {
      if (nodes.get(p)?.noRead) throw Object.assign(new Error('EACCES'), { code: 'EACCES' })
      return [...nodes.keys()].filter((k) => k !== '/' && path.dirname(k) === p).map((k) => path.basename(k))
    },
    writable: (p) => writableByMe.includes(p),
  }
}

const PATHS = { execPath: '/usr/bin/node', helperPath: '/usr/lib/node_modules/subnet-tunnel/dist/platform/helper/helper-main.js', packageRoot: '/usr/lib/node_modules/subnet-tunnel' }
const FILE = { isDirectory: false }
/** A sound global install: node, the package's files, one dependency. */
const GOOD: Record<string, Node> = {
  '/usr/bin/node': FILE,
  [PATHS.helperPath]: FILE,
  '/usr/lib/node_modules/subnet-tunnel/dist/config/cidr.js': FILE,
  '/usr/lib/node_modules/subnet-tunnel/package.json': FILE,
  '/usr/lib/node_modules/subnet-tunnel/node_modules/ipaddr.js/lib/ipaddr.js': FILE,
}
const check = (over: Record<string, Node>, writable: string[] = []) => checkInstallSafety(PATHS, fakeFs({ ...GOOD, ...over }, writable))

describe('checkInstallSafety', () => {
  it('a root-owned install with no writable path is safe', () => {
    expect(check({})).toEqual({ safe: true })
  })

  it('node from nvm in $HOME: the home directory is the first unsafe path', () => {
    const v = checkInstallSafety({ ...PATHS, execPath: '/home/alice/.nvm/versions/node/v20/bin/node' },
      fakeFs({ ...GOOD, '/home/alice': { isDirectory: true, uid: 1000, mode: 0o750 }, '/home/alice/.nvm/versions/node/v20/bin/node': { ...FILE, uid: 1000 } }))
    expect(v).toEqual({ safe: false, path: '/home/alice', reason: 'is owned by uid 1000, not root' })
  })

  const cases: Array<[string, Record<string, Node>, string, string, string[]?]> = [
    ['a user-owned file deep in dist/', { '/usr/lib/node_modules/subnet-tunnel/dist/config/cidr.js': { ...FILE, uid: 1000 } }, '/usr/lib/node_modules/subnet-tunnel/dist/config/cidr.js', 'is owned by uid 1000, not root'],
    ['a world-writable dependency file', { '/usr/lib/node_modules/subnet-tunnel/node_modules/ipaddr.js/lib/ipaddr.js': { ...FILE, mode: 0o666 } }, '/usr/lib/node_modules/subnet-tunnel/node_modules/ipaddr.js/lib/ipaddr.js', 'is writable by everyone'],
    ['a directory group-writable by staff (Debian /usr/local)', { '/usr/lib': { isDirectory: true, gid: 50, mode: 0o2775 } }, '/usr/lib', 'is writable by group 50'],
    ['package.json writable by the user through an ACL', {}, '/usr/lib/node_modules/subnet-tunnel/package.json', 'is writable by you (an ACL?)', ['/usr/lib/node_modules/subnet-tunnel/package.json']],
    ['the helper itself', { [PATHS.helperPath]: { ...FILE, mode: 0o646 } }, PATHS.helperPath, 'is writable by everyone'],
  ]
  for (const [what, over, at, reason, writable] of cases) {
    it(`${what}: unsafe, and says which path and why`, () => {
      expect(check(over, writable)).toEqual({ safe: false, path: at, reason })
    })
  }

  it('a package under a world-writable sticky directory (/tmp) is unsafe', () => {
    const v = checkInstallSafety({ ...PATHS, helperPath: '/tmp/st/dist/platform/helper/helper-main.js', packageRoot: '/tmp/st' },
      fakeFs({ ...GOOD, '/tmp': { isDirectory: true, mode: 0o1777 }, '/tmp/st/dist/platform/helper/helper-main.js': FILE }))
    expect(v).toEqual({ safe: false, path: '/tmp', reason: 'is writable by everyone' })
  })

  it('group root may write (its members are root\'s business); an ACL for the user is still caught', () => {
    expect(check({ '/usr/lib/node_modules': { isDirectory: true, mode: 0o775 } })).toEqual({ safe: true })
    expect(check({ '/usr/lib/node_modules': { isDirectory: true, mode: 0o775 } }, ['/usr/lib/node_modules']))
      .toMatchObject({ safe: false, path: '/usr/lib/node_modules' })
  })

  it('symlinks: the path as given and its target are both checked, and a linked package is walked', () => {
    // node through /usr/local/bin/node → a user's nvm copy
    const viaLink = checkInstallSafety({ ...PATHS, execPath: '/usr/local/bin/node' }, fakeFs({
      ...GOOD, '/usr/local/bin/node': { link: '/home/bob/node' }, '/home/bob': { isDirectory: true, uid: 1001 }, '/home/bob/node': { ...FILE, uid: 1001 },
    }))
    expect(viaLink).toEqual({ safe: false, path: '/home/bob', reason: 'is owned by uid 1001, not root' })
    // a dependency linked (npm link) into a user's checkout
    const linkedDep = check({
      '/usr/lib/node_modules/subnet-tunnel/node_modules/ipaddr.js': { link: '/srv/ipaddr' },
      '/srv/ipaddr/lib/ipaddr.js': { ...FILE, uid: 1002 },
    })
    expect(linkedDep).toEqual({ safe: false, path: '/srv/ipaddr/lib/ipaddr.js', reason: 'is owned by uid 1002, not root' })
    // a user-owned symlink is unsafe whatever it points to
    expect(check({ '/usr/lib/node_modules/subnet-tunnel/dist/x.js': { link: 'config/cidr.js', uid: 1000 } }))
      .toMatchObject({ safe: false, path: '/usr/lib/node_modules/subnet-tunnel/dist/x.js' })
  })

  it('missing or unreadable paths are not assumed safe; a missing node_modules is fine', () => {
    expect(checkInstallSafety({ ...PATHS, execPath: '/nope/node' }, fakeFs(GOOD))).toMatchObject({ safe: false, path: '/nope/node', reason: 'cannot be resolved (ENOENT)' })
    expect(check({ '/usr/lib/node_modules/subnet-tunnel/dist/config': { isDirectory: true, noRead: true } }))
      .toEqual({ safe: false, path: '/usr/lib/node_modules/subnet-tunnel/dist/config', reason: 'cannot be listed (EACCES)' })
    const noDeps = Object.fromEntries(Object.entries(GOOD).filter(([p]) => !p.includes('/subnet-tunnel/node_modules/')))
    expect(checkInstallSafety(PATHS, fakeFs(noDeps))).toEqual({ safe: true })
  })
})

describe.skipIf(process.getuid?.() !== 0)('checkInstallSafety on a real throwaway tree (root)', () => {
  it('root-owned 0755 under /run is safe; a chown, a chmod g+w or a user-owned parent each make it unsafe', () => {
    // /run: root-owned 0755 all the way up (os.tmpdir() is world-writable and would fail at once).
    const top = fs.mkdtempSync('/run/st-safety-')
    try {
      const pkg = path.join(top, 'pkg')
      const helper = path.join(pkg, 'dist/platform/helper/helper-main.js')
      fs.mkdirSync(path.dirname(helper), { recursive: true })
      fs.mkdirSync(path.join(pkg, 'node_modules/dep'), { recursive: true })
      for (const f of [helper, path.join(pkg, 'package.json'), path.join(pkg, 'node_modules/dep/index.js')]) fs.writeFileSync(f, '')
      execFileSync('chmod', ['-R', 'u=rwX,go=rX', top])
      // The interpreter: any root-owned binary (the node running this test may live anywhere).
      const paths = { execPath: '/bin/sh', helperPath: helper, packageRoot: pkg }
      const real = realSafetyFs(0)
      expect(checkInstallSafety(paths, real)).toEqual({ safe: true })

      const dep = path.join(pkg, 'node_modules/dep/index.js')
      fs.chownSync(dep, 65534, 65534)
      expect(checkInstallSafety(paths, real)).toEqual({ safe: false, path: dep, reason: 'is owned by uid 65534, not root' })
      fs.chownSync(dep, 0, 0)
      fs.chmodSync(path.join(pkg, 'dist'), 0o775)
      fs.chownSync(path.join(pkg, 'dist'), 0, 65534)
      expect(checkInstallSafety(paths, real)).toEqual({ safe: false, path: path.join(pkg, 'dist'), reason: 'is writable by group 65534' })
      fs.chmodSync(path.join(pkg, 'dist'), 0o755)
      fs.chownSync(top, 65534, 65534)
      expect(checkInstallSafety(paths, real)).toEqual({ safe: false, path: top, reason: 'is owned by uid 65534, not root' })
    } finally {
      fs.rmSync(top, { recursive: true, force: true })
    }
  })
})
