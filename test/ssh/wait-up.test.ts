import { EventEmitter } from 'node:events'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { waitUntilUp } from '../../src/ssh/wait-up'

describe('waitUntilUp: a dial during an outage waits a bounded time, never forever', () => {
  afterEach(() => vi.useRealTimers())

  it('resolves at once when up, and on the next "up" otherwise, leaving no listener', async () => {
    const c = new EventEmitter()
    await expect(waitUntilUp(c, () => 'up', 'b', 1000)).resolves.toBeUndefined()
    const p = waitUntilUp(c, () => 'down', 'b', 1000)
    c.emit('up')
    await expect(p).resolves.toBeUndefined()
    expect(c.listenerCount('up') + c.listenerCount('closed')).toBe(0)
  })

  it('rejects NOT_CONNECTED when closed (already, or meanwhile) and after the timeout, naming the server', async () => {
    vi.useFakeTimers()
    const c = new EventEmitter()
    await expect(waitUntilUp(c, () => 'closed', 'b', 1000)).rejects.toMatchObject({ code: 'NOT_CONNECTED' })
    const closed = waitUntilUp(c, () => 'down', 'b', 1000)
    c.emit('closed')
    await expect(closed).rejects.toMatchObject({ code: 'NOT_CONNECTED', message: 'ssh: the SSH session is closed' })
    const late = waitUntilUp(c, () => 'down', 'bastion.example', 2500)
    vi.advanceTimersByTime(2500)
    await expect(late).rejects.toMatchObject({
      code: 'NOT_CONNECTED',
      message: 'ssh: the SSH connection to bastion.example is down and did not come back within 2.5 s',
    })
    expect(c.listenerCount('up') + c.listenerCount('closed')).toBe(0)
  })
})
