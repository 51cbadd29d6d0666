import { EventEmitter } from 'node:events'
import { PassThrough, type Duplex } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { memoryLogger } from '../../src/observe/logger'
import { DialError } from '../../src/router/dial-error'
import type { SshConnection } from '../../src/ssh/engine'
import { channelOpenFailure, OPEN_FAILURE } from '../../src/ssh/channel-open-failure'
import { PROBE_TARGET, probeForwarding } from '../../src/tunnel/forward-probe'

/** An SshConnection whose dial does what `dial` says, recording where it was asked to go. */
function conn(dial: () => Promise<Duplex>): SshConnection & { asked: string[] } {
  const c = new EventEmitter() as SshConnection & { asked: string[] }
  c.asked = []
  Object.assign(c, { dial: async (dst: { host: string; port: number }) => (c.asked.push(`${dst.host}:${dst.port}`), dial()) })
  return c
}

describe('the forwarding probe', () => {
  it('refuses a bastion that prohibits the probe channel, naming it and --no-forward-check', async () => {
    const c = conn(async () => {
      throw channelOpenFailure(OPEN_FAILURE.PROHIBITED, 'open failed', PROBE_TARGET, 'bastion')
    })
    await expect(probeForwarding(c, 'bastion', memoryLogger())).rejects.toMatchObject({
      code: 'FORWARDING_PROHIBITED',
      message: 'bastion does not permit TCP forwarding for this account: a probe channel was "administratively prohibited"',
      hint: expect.stringContaining('--no-forward-check'),
    })
    expect(c.asked).toEqual(['127.0.0.1:1'])
  })

  it('passes when the server tried to connect (refused, unreachable) or opened the channel (closed at once)', async () => {
    await probeForwarding(conn(async () => Promise.reject(channelOpenFailure(OPEN_FAILURE.CONNECT_FAILED, 'Connection refused', PROBE_TARGET, 'b'))), 'b', memoryLogger())
    await probeForwarding(conn(async () => Promise.reject(new DialError('unreachable', 'x'))), 'b', memoryLogger())
    const s = new PassThrough()
    await probeForwarding(conn(async () => s), 'b', memoryLogger())
    expect(s.destroyed).toBe(true)
  })

  it('does not hold the start up when the server does not answer: not checked, said at -v', async () => {
    const log = memoryLogger('verbose')
    const t0 = Date.now()
    await probeForwarding(conn(() => new Promise(() => {})), 'b', log, 100)
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(log.lines).toEqual(['[ssh] b: no answer to the forwarding probe within 100 ms; not checked'])
  })
})
