import { describe, expect, it } from 'vitest'
import { ifNameToIndex, linuxPathQuery, runCommand, type RunResult } from '../../../src/platform/os/net-path'
import { lookups, readFixture } from './fixtures'

const got = lookups(readFixture('ip-lookups-linux.txt'))
const onLinux = process.platform === 'linux'

/** A fake `ip` answering from the captured outputs (the n-th lookup of each command). */
function capturedIp(n: number) {
  return async (argv: readonly string[]): Promise<RunResult> => {
    const l = got.filter((x) => x.command === (argv[3] === 'get' ? `ip -o route get ${argv[4]}` : argv.join(' ')))[n]
    if (!l) throw new Error(`no capture for ${argv.join(' ')}`)
    return l.exit === 0 ? { code: 0, stdout: l.output, stderr: '' } : { code: l.exit, stdout: '', stderr: l.output }
  }
}

describe('linuxPathQuery', () => {
  it('path with index and link state, from real outputs: up, admin down (no route), no carrier', async () => {
    const up = await linuxPathQuery(capturedIp(0))('203.0.113.7')
    const eth0 = up.links.find((l) => l.name === 'eth0')!
    expect(up.path).toEqual({ dev: 'eth0', via: '192.168.50.1', src: '192.168.50.2', index: eth0.index, up: true })
    expect(up.links.map((l) => l.name)).toEqual(['lo', 'eth0', 'eth1'])
    const down = await linuxPathQuery(capturedIp(1))('203.0.113.7')
    expect(down.path).toBeUndefined()
    expect(down.links.find((l) => l.name === 'eth0')).toMatchObject({ up: false })
    // Carrier lost: the IPv4 route stays, the link says it cannot carry anything.
    const noCarrier = await linuxPathQuery(capturedIp(2))('203.0.113.7')
    expect(noCarrier.path).toMatchObject({ dev: 'eth0', via: '192.168.50.1', up: false })
  })

  it('an ip that fails otherwise is an error, not "no route"', async () => {
    const broken = async (): Promise<RunResult> => ({ code: 255, stdout: '', stderr: 'Object "route" is unknown, try "ip help".\n' })
    await expect(linuxPathQuery(broken)('203.0.113.7')).rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
  })

  it.runIf(onLinux)('looks up a real route (loopback, read-only) and a real interface index', async () => {
    const snap = await linuxPathQuery()('127.0.0.1')
    expect(snap.path).toMatchObject({ dev: 'lo', index: 1, up: true })
    expect(ifNameToIndex('lo')).toBe(1)
    expect(ifNameToIndex('st-no-such-if')).toBeUndefined()
  })
})

describe('runCommand', () => {
  it('collects output and status; a missing program rejects; a hung one is killed', async () => {
    expect(await runCommand(['sh', '-c', 'echo out; echo err >&2; exit 3'])).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' })
    await expect(runCommand(['/nonexistent/ip'])).rejects.toMatchObject({ code: 'FW_UNSUPPORTED' })
    const t0 = Date.now()
    const r = await runCommand(['sleep', '30'], 200)
    expect(r.code).toBeNull()
    expect(Date.now() - t0).toBeLessThan(3000)
  })
})
