import { describe, it, expect } from 'vitest'
// The bench is plain CommonJS (scripts/ has no build step): load it with require.
const { eachRound, withContender, failReason, rowOf } = require('../../scripts/bench-lib/suites/tcp-util.js')
const { RunBook } = require('../../scripts/bench-lib/runs.js')

type Target = { handle: { stop: () => Promise<void> }; host: string; port: number }
type Fake = { kind: string; contender: string; label: string; start: (alias: string, port: number) => Promise<Target> }

function ctxWith(repeat: number) {
  const lines: string[] = []
  return { repeat, book: new RunBook(), notes: [] as string[], progress: (l: string) => lines.push(l), lines }
}

/** A contender whose start() resolves (stop() counted) or rejects with `startError`. */
function fake(name: string, log: string[], startError?: Error): Fake {
  return {
    kind: 'competitor', contender: name, label: name,
    start: async () => {
      log.push(`start ${name}`)
      if (startError) throw startError
      return { handle: { stop: async () => void log.push(`stop ${name}`) }, host: '127.0.0.1', port: 1 }
    },
  }
}

// What startDaemon throws when ssh -L cannot bind (proc.js): the reason is the tool's last line.
const BIND_FAILURE = new Error(
  'ssh -L 20080:10.251.0.10:80 exited (code 255, signal null)\n  argv: ip netns exec st-bench1-client ssh …\n  output:\n' +
    'bind [127.0.0.1]:20080: Address already in use\nchannel_setup_fwd_listener_tcpip: cannot listen to port: 20080\nCould not request local forwarding.',
)

describe('eachRound', () => {
  it('interleaves contenders per round (A B, A B), not N runs of one in a row', async () => {
    const order: string[] = []
    await eachRound(ctxWith(2), ['A', 'B'], async (c: string, round: number) => void order.push(`${c}${round}`))
    expect(order).toEqual(['A1', 'B1', 'A2', 'B2'])
  })
})

describe('withContender: a failing row is reported and the rest still runs', () => {
  it('a contender that does not start fails its rows for that round, with the reason; the next one runs', async () => {
    const ctx = ctxWith(2)
    const log: string[] = []
    const tests = ['bulk upload', 'bulk download']
    const contenders = [fake('ssh -L', log, BIND_FAILURE), fake('sshuttle', log)]
    await eachRound(ctx, contenders, async (c: Fake, round: number) => {
      const ids = tests.map((t) => rowOf('bulk', t, 0, c))
      await withContender(ctx, c, 'alias', 5201, round, ids, async () => {
        for (const id of ids) ctx.book.record(id, round, { gbps: 1 })
      })
    })
    const rows = ctx.book.rows()
    const sshL = rows.filter((r: { contender: string }) => r.contender === 'ssh -L')
    expect(sshL.map((r: { okRuns: number; failedRuns: number }) => [r.okRuns, r.failedRuns])).toEqual([[0, 2], [0, 2]])
    expect(sshL[0].runs[0].error).toBe(
      'start: ssh -L 20080:10.251.0.10:80 exited (code 255, signal null): Could not request local forwarding.',
    )
    expect(sshL[0].runs[0].detail).toContain('Address already in use')
    const sshuttle = rows.filter((r: { contender: string }) => r.contender === 'sshuttle')
    expect(sshuttle.map((r: { okRuns: number }) => r.okRuns)).toEqual([2, 2])
    expect(log).toEqual(['start ssh -L', 'start sshuttle', 'stop sshuttle', 'start ssh -L', 'start sshuttle', 'stop sshuttle'])
  })

  it('a measurement that throws half-way keeps the rows already measured, fails the others, and still stops', async () => {
    const ctx = ctxWith(1)
    const log: string[] = []
    const c = fake('subnet-tunnel nat/builtin', log)
    const ids = ['a', 'b', 'c'].map((t) => rowOf('bulk', t, 0, c))
    await withContender(ctx, c, 'alias', 5201, 1, ids, async () => {
      ctx.book.record(ids[0], 1, { gbps: 2 })
      throw new Error('iperf3: output is not JSON')
    })
    expect(ctx.book.rows().map((r: { okRuns: number; errors: string[] }) => [r.okRuns, r.errors])).toEqual([
      [1, []], [0, ['measure: iperf3: output is not JSON']], [0, ['measure: iperf3: output is not JSON']],
    ])
    expect(log).toEqual(['start subnet-tunnel nat/builtin', 'stop subnet-tunnel nat/builtin'])
  })

  it('a stop that throws becomes a note, not a crash', async () => {
    const ctx = ctxWith(1)
    const c = { ...fake('x', []), start: async () => ({ handle: { stop: async () => { throw new Error('kill: EPERM') } }, host: 'h', port: 1 }) }
    await withContender(ctx, c, 'alias', 1, 1, [], async () => undefined)
    expect(ctx.notes).toEqual(['stop x (round 1) failed: kill: EPERM'])
  })
})

describe('failReason', () => {
  it('one line: the first line, plus the tool\'s last line when it printed one', () => {
    expect(failReason(new Error('plain'))).toBe('plain')
    expect(failReason(BIND_FAILURE)).toBe('ssh -L 20080:10.251.0.10:80 exited (code 255, signal null): Could not request local forwarding.')
    expect(failReason('x'.repeat(1000)).length).toBe(400)
  })
})
