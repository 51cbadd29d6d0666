import { errorMessage } from '../errors'
import type { Logger } from '../observe/logger'

/** Everything that must be undone, newest first. Each step is best-effort and logged. */
export class Teardown {
  private readonly steps: { what: string; run: () => Promise<unknown> }[] = []
  constructor(private readonly log: Logger) {}
  push(what: string, run: () => Promise<unknown>): void {
    this.steps.unshift({ what, run })
  }
  async run(): Promise<void> {
    for (const s of this.steps.splice(0)) {
      try {
        await s.run()
      } catch (e) {
        this.log.warn('cli', `teardown: ${s.what}: ${errorMessage(e)}`)
      }
    }
  }
}
