import type { ExecResult, Executor } from '../../src/platform/firewall/types'

/** A scripted reply: by default every command succeeds with empty output. */
export type FakeReply = Partial<ExecResult> | ((argv: readonly string[]) => Partial<ExecResult> | undefined)

/**
 * An Executor for tests: records every argv and answers from a script. `failAt(n, stderr)`
 * makes the n-th call (0-based) fail; `on(pred, reply)` answers matching argv.
 */
export class FakeExecutor implements Executor {
  readonly calls: string[][] = []
  readonly inputs: Array<string | undefined> = []
  private readonly failures = new Map<number, Partial<ExecResult>>()
  private readonly rules: Array<{ pred: (argv: readonly string[]) => boolean; reply: FakeReply }> = []

  /** Makes call number n (0-based, counted over all calls) fail. */
  failAt(n: number, stderr = 'simulated failure', code = 1): this {
    this.failures.set(n, { code, stderr })
    return this
  }

  /** Answers every argv matching pred (the last matching rule wins). */
  on(pred: (argv: readonly string[]) => boolean, reply: FakeReply): this {
    this.rules.push({ pred, reply })
    return this
  }

  async run(argv: readonly string[], opts?: { input?: string }): Promise<ExecResult> {
    const n = this.calls.length
    this.calls.push([...argv])
    this.inputs.push(opts?.input)
    let reply: Partial<ExecResult> | undefined = this.failures.get(n)
    if (!reply) {
      for (let i = this.rules.length - 1; i >= 0 && !reply; i--) {
        const r = this.rules[i]
        if (r.pred(argv)) reply = typeof r.reply === 'function' ? r.reply(argv) : r.reply
      }
    }
    return { code: reply?.code ?? 0, stdout: reply?.stdout ?? '', stderr: reply?.stderr ?? '' }
  }
}
